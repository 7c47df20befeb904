//! What a session's queue holds: one frame, or a run of room messages
//! joined into one buffer.
//!
//! A room that hands a run of messages to its members at once (see
//! `Room::publish_held`) joins their lines into one buffer, once for the
//! room, and a member that takes the whole run queues that buffer as one
//! entry. Its writer then hands the kernel one slice for the run instead of
//! one per message, and the run costs the member one reference count, one
//! slot and one slice where each message cost one of each. (The messages'
//! own frames stay as they are: the room's memory of recent messages, the
//! run's senders and the members that take only part of a run use them.)

use std::fmt;
use std::sync::{Arc, OnceLock};

use bytes::{Bytes, BytesMut};

use super::Outbound;

/// One entry of a session's queue.
#[derive(Clone)]
pub(crate) enum Entry {
    /// A frame on its own.
    Frame(Arc<Outbound>),
    /// Room messages joined into one buffer, in order.
    Run(Arc<JoinedRun>),
}

impl Entry {
    /// The JSON bytes, with every line's `\n`.
    pub(crate) fn json(&self) -> &Bytes {
        match self {
            Self::Frame(frame) => frame.json(),
            Self::Run(run) => &run.json,
        }
    }

    /// The text-dialect lines, or `None` when text clients are shown none
    /// of them.
    pub(crate) fn text(&self) -> Option<&Bytes> {
        match self {
            Self::Frame(frame) => frame.text(),
            Self::Run(run) => run.text(),
        }
    }

    /// True for a `bye` (never a run: runs hold room messages only).
    pub(crate) fn is_bye(&self) -> bool {
        match self {
            Self::Frame(frame) => frame.is_bye(),
            Self::Run(_) => false,
        }
    }

    /// The frames, one by one, in order.
    pub(crate) fn frames(&self) -> &[Arc<Outbound>] {
        match self {
            Self::Frame(frame) => std::slice::from_ref(frame),
            Self::Run(run) => run.frames(),
        }
    }
}

impl fmt::Debug for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Frame(frame) => frame.fmt(f),
            Self::Run(run) => f
                .debug_struct("JoinedRun")
                .field("frames", &run.frames.len())
                .finish_non_exhaustive(),
        }
    }
}

/// Room messages joined into one buffer for the members that take them
/// all (see the module's introduction).
pub(crate) struct JoinedRun {
    frames: Box<[Arc<Outbound>]>,
    /// The frames' JSON lines, one after another.
    json: Bytes,
    /// Their text-dialect lines, joined by the first text session that
    /// needs them.
    text: OnceLock<Option<Bytes>>,
}

impl JoinedRun {
    /// Joins `frames`, whose JSON lines are `bytes` long in all.
    pub(crate) fn new(frames: &[Arc<Outbound>], bytes: usize) -> Arc<Self> {
        let mut json = BytesMut::with_capacity(bytes);
        for frame in frames {
            json.extend_from_slice(frame.json());
        }
        debug_assert_eq!(json.len(), bytes);
        Arc::new(Self {
            frames: frames.into(),
            json: json.freeze(),
            text: OnceLock::new(),
        })
    }

    /// The frames joined, in order.
    pub(crate) fn frames(&self) -> &[Arc<Outbound>] {
        &self.frames
    }

    fn text(&self) -> Option<&Bytes> {
        self.text
            .get_or_init(|| {
                let mut text = BytesMut::new();
                for line in self.frames.iter().filter_map(|f| f.text()) {
                    text.extend_from_slice(line);
                }
                (!text.is_empty()).then(|| text.freeze())
            })
            .as_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{Nickname, RoomName, ServerMessage};

    fn said(id: u64, text: &str) -> Arc<Outbound> {
        Outbound::message(ServerMessage::Message {
            room: RoomName::new("lobby").unwrap(),
            id,
            from: Nickname::new("bob").unwrap(),
            text: text.to_owned(),
            ts: 1_767_225_600_000,
            action: false,
        })
    }

    #[test]
    fn a_run_reads_as_its_frames_one_after_another_in_both_dialects() {
        let frames = [said(1, "one"), said(2, "two"), said(3, "three")];
        let bytes = frames.iter().map(|f| f.json().len()).sum();
        let run = Entry::Run(JoinedRun::new(&frames, bytes));
        let json: Vec<u8> = frames.iter().flat_map(|f| f.json().to_vec()).collect();
        let text: Vec<u8> = frames
            .iter()
            .flat_map(|f| f.text().unwrap().to_vec())
            .collect();
        assert_eq!(run.json()[..], json[..]);
        assert_eq!(run.text().unwrap()[..], text[..]);
        assert_eq!(run.frames().len(), 3);
        assert!(!run.is_bye());
        let one = Entry::Frame(frames[1].clone());
        assert_eq!(one.json(), frames[1].json());
        assert_eq!(one.frames().len(), 1);
    }
}
