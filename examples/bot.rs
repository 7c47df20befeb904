//! A bot on the client API: it joins a room and answers two commands,
//! `!time` (the server host's clock, in UTC) and `!who` (who is in the room).
//!
//! ```text
//! cargo run -p chatroom-examples --example bot -- [HOST:PORT] [ROOM]
//! ```
//!
//! The defaults are `127.0.0.1:7878` and `lobby`. Start a server first (for
//! example `cargo run -p chatroom-examples --example embed_server`, then
//! pass the address it prints). In a second terminal, connect with
//! `chatroom-client --server HOST:PORT` and type `!time` or `!who`.
//! Ctrl-C makes the bot quit politely. It reconnects when the server
//! restarts, and rejoins its room.

use std::time::{SystemTime, UNIX_EPOCH};

use chatroom_core::client::{Client, ClientError, ClientOptions, Event, Reconnect};
use chatroom_core::protocol::{Nickname, RoomName};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:7878".to_owned());
    let room = RoomName::parse_typed(&args.next().unwrap_or_else(|| "lobby".to_owned()))?;

    let options = ClientOptions::new()
        .with_nick(Nickname::new("timebot")?)
        .with_reconnect(Reconnect::new());
    let (client, mut events) = Client::connect(addr.clone(), options).await?;
    client.join(&room).await?;
    println!("{} joined #{room} on {addr}", client.current_nick());

    loop {
        let event = tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            event = events.next() => match event {
                Some(event) => event,
                None => return Ok(()),
            },
        };
        match event {
            Event::Message {
                room, from, text, ..
            } => {
                // Answering inside the event loop is fine: the connection
                // task never waits for this loop, so a reply cannot deadlock.
                if let Err(e) = answer(&client, &room, &text).await {
                    eprintln!("cannot answer {from} in #{room}: {e}");
                }
            }
            Event::Disconnected { reason } => eprintln!("disconnected: {reason}"),
            Event::Reconnected { rooms, .. } => eprintln!("reconnected, back in {rooms:?}"),
            _ => {}
        }
    }
    client.quit(Some("bot stopped")).await?;
    Ok(())
}

/// Answers `text` if it is one of the bot's commands.
async fn answer(client: &Client, room: &RoomName, text: &str) -> Result<(), ClientError> {
    match text.trim() {
        "!time" => {
            client.say(room, format!("it is {}", utc_now())).await?;
        }
        "!who" => {
            let members = client.who(room).await?;
            let names: Vec<&str> = members.iter().map(Nickname::as_str).collect();
            client
                .say(room, format!("in #{room}: {}", names.join(", ")))
                .await?;
        }
        _ => {}
    }
    Ok(())
}

/// The current time as `YYYY-MM-DD HH:MM:SS UTC`, without a date library.
fn utc_now() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_from_days(days as i64);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        rest / 3600,
        rest / 60 % 60,
        rest % 60
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's
/// `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}
