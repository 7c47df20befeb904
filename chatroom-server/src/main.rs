//! The chatroom server binary (being written).

fn main() {}
