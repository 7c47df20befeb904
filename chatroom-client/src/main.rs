//! The chatroom client binary (being written).

fn main() {}
