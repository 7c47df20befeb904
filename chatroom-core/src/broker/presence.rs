//! Who is in which room on the other nodes of a cluster: the bookkeeping,
//! with no I/O.
//!
//! Each node numbers the changes of its own members' presence (joins,
//! leaves, renames) and publishes them, in order, as [`Bulletin`]s; between
//! changes it repeats its last number as a heartbeat. Every node keeps a
//! [`Views`] of the others and applies each node's changes in number order.
//! A gap in the numbers (a bulletin lost, a node first heard mid-way) or a
//! heartbeat ahead of what was heard asks that node for a [`Snapshot`],
//! which replaces the view; the changes heard meanwhile wait and are
//! applied after it. A node silent for too long is dropped.
//!
//! What a view change means for this node's clients comes back as
//! [`Effect`]s, in order, for the caller to deliver.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::protocol::{Nickname, RoomInfo, RoomName};

/// Most changes kept while a node's snapshot is awaited; past that they are
/// dropped and a later snapshot covers them.
const MAX_PENDING: usize = 4096;

/// One change of a node's presence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "change", rename_all = "snake_case")]
pub(crate) enum Change {
    /// A member joined a room.
    Joined { room: RoomName, nick: Nickname },
    /// A member left a room.
    Left {
        room: RoomName,
        nick: Nickname,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// A member changed nick (in every room it is in).
    Renamed { old: Nickname, new: Nickname },
}

/// What a node publishes: change number `seq`, or, without a change, a
/// heartbeat saying that `seq` is its last change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Bulletin {
    pub(crate) instance: String,
    pub(crate) seq: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) change: Option<Change>,
}

/// A node's whole presence as of change `seq`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Snapshot {
    pub(crate) seq: u64,
    pub(crate) rooms: Vec<(RoomName, Vec<Nickname>)>,
}

/// What this node's members must be told about another node's members.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Effect {
    Joined {
        room: RoomName,
        nick: Nickname,
    },
    Left {
        room: RoomName,
        nick: Nickname,
        reason: Option<String>,
    },
    /// `old` is now `new` in `rooms`.
    Renamed {
        rooms: Vec<RoomName>,
        old: Nickname,
        new: Nickname,
    },
}

/// Who is in which room, by folded room name and folded nick.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Memberships {
    rooms: HashMap<String, (RoomName, BTreeMap<String, Nickname>)>,
}

impl Memberships {
    /// Applies `change`; returns what it changed for a watcher, or `None`
    /// when it changed nothing (a join of a member, a leave of a stranger).
    pub(crate) fn apply(&mut self, change: &Change) -> Option<Effect> {
        match change {
            Change::Joined { room, nick } => {
                let (_, nicks) = self
                    .rooms
                    .entry(room.key())
                    .or_insert_with(|| (room.clone(), BTreeMap::new()));
                match nicks.entry(nick.key()) {
                    std::collections::btree_map::Entry::Occupied(_) => None,
                    std::collections::btree_map::Entry::Vacant(slot) => {
                        slot.insert(nick.clone());
                        Some(Effect::Joined {
                            room: room.clone(),
                            nick: nick.clone(),
                        })
                    }
                }
            }
            Change::Left { room, nick, reason } => {
                let key = room.key();
                let (_, nicks) = self.rooms.get_mut(&key)?;
                let removed = nicks.remove(&nick.key())?;
                if nicks.is_empty() {
                    self.rooms.remove(&key);
                }
                Some(Effect::Left {
                    room: room.clone(),
                    nick: removed,
                    reason: reason.clone(),
                })
            }
            Change::Renamed { old, new } => {
                let (old_key, new_key) = (old.key(), new.key());
                let mut rooms = Vec::new();
                for (name, nicks) in self.rooms.values_mut() {
                    if nicks.remove(&old_key).is_some() {
                        nicks.insert(new_key.clone(), new.clone());
                        rooms.push(name.clone());
                    }
                }
                (!rooms.is_empty()).then(|| Effect::Renamed {
                    rooms,
                    old: old.clone(),
                    new: new.clone(),
                })
            }
        }
    }

    /// Every (room, nick) pair.
    fn pairs(&self) -> impl Iterator<Item = (&RoomName, &Nickname)> {
        self.rooms
            .values()
            .flat_map(|(room, nicks)| nicks.values().map(move |nick| (room, nick)))
    }

    fn contains(&self, room: &RoomName, nick: &Nickname) -> bool {
        self.rooms
            .get(&room.key())
            .is_some_and(|(_, nicks)| nicks.contains_key(&nick.key()))
    }

    /// The members of `room`.
    fn nicks_in(&self, room: &RoomName) -> impl Iterator<Item = &Nickname> {
        self.rooms
            .get(&room.key())
            .into_iter()
            .flat_map(|(_, nicks)| nicks.values())
    }

    fn from_snapshot(rooms: Vec<(RoomName, Vec<Nickname>)>) -> Self {
        let mut members = Self::default();
        for (room, nicks) in rooms {
            for nick in nicks {
                members.apply(&Change::Joined {
                    room: room.clone(),
                    nick,
                });
            }
        }
        members
    }

    fn to_snapshot(&self, seq: u64) -> Snapshot {
        let mut rooms: Vec<(RoomName, Vec<Nickname>)> = self
            .rooms
            .values()
            .map(|(room, nicks)| (room.clone(), nicks.values().cloned().collect()))
            .collect();
        rooms.sort_by_key(|(room, _)| room.key());
        Snapshot { seq, rooms }
    }
}

/// This node's own members, numbered change by change.
#[derive(Debug, Default)]
pub(crate) struct LocalPresence {
    seq: u64,
    members: Memberships,
}

impl LocalPresence {
    /// Records a change of this node's members; returns its number, or
    /// `None` when it changed nothing (and is not to be published).
    pub(crate) fn record(&mut self, change: &Change) -> Option<u64> {
        self.members.apply(change)?;
        self.seq += 1;
        Some(self.seq)
    }

    /// The number of the last change.
    pub(crate) fn seq(&self) -> u64 {
        self.seq
    }

    /// Everything, as of the last change.
    pub(crate) fn snapshot(&self) -> Snapshot {
        self.members.to_snapshot(self.seq)
    }
}

/// What one bulletin or snapshot did to the views.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Outcome {
    /// To tell this node's members, in order.
    pub(crate) effects: Vec<Effect>,
    /// A node whose snapshot must be asked for.
    pub(crate) ask: Option<String>,
}

/// What this node knows of one other node.
#[derive(Debug)]
struct View {
    /// The last change applied to `members`; meaningful once `synced`.
    seq: u64,
    synced: bool,
    members: Memberships,
    heard: Instant,
    /// Changes heard ahead of `seq`, waiting for the ones before them.
    pending: BTreeMap<u64, Change>,
    /// When a snapshot was last asked for, while it is awaited.
    asked: Option<Instant>,
}

impl View {
    fn new(now: Instant) -> Self {
        Self {
            seq: 0,
            synced: false,
            members: Memberships::default(),
            heard: now,
            pending: BTreeMap::new(),
            asked: None,
        }
    }

    /// Applies the waiting changes that follow `seq` without a gap.
    fn drain(&mut self, effects: &mut Vec<Effect>) {
        while let Some(change) = self.pending.remove(&(self.seq + 1)) {
            self.seq += 1;
            effects.extend(self.members.apply(&change));
        }
    }

    /// Asks for a snapshot unless one was asked for within `retry`.
    fn ask(&mut self, instance: &str, now: Instant, retry: Duration, outcome: &mut Outcome) {
        if self
            .asked
            .is_none_or(|at| now.saturating_duration_since(at) >= retry)
        {
            self.asked = Some(now);
            outcome.ask = Some(instance.to_owned());
        }
    }
}

/// What this node knows of every other node, by instance.
#[derive(Debug)]
pub(crate) struct Views {
    own: String,
    nodes: HashMap<String, View>,
    /// How long an unanswered snapshot request waits before it is repeated.
    retry: Duration,
}

impl Views {
    /// No other node known yet; bulletins from `own` (this node) are
    /// ignored.
    pub(crate) fn new(own: impl Into<String>, retry: Duration) -> Self {
        Self {
            own: own.into(),
            nodes: HashMap::new(),
            retry,
        }
    }

    /// Takes in a bulletin heard at `now`.
    pub(crate) fn on_bulletin(&mut self, bulletin: Bulletin, now: Instant) -> Outcome {
        let mut outcome = Outcome::default();
        let Bulletin {
            instance,
            seq,
            change,
        } = bulletin;
        if instance == self.own {
            return outcome;
        }
        let view = self
            .nodes
            .entry(instance.clone())
            .or_insert_with(|| View::new(now));
        view.heard = now;
        match change {
            None if !view.synced && seq == 0 && view.pending.is_empty() => {
                // A node with no change yet: its presence is empty.
                view.synced = true;
            }
            None if view.synced && seq <= view.seq => {}
            None => view.ask(&instance, now, self.retry, &mut outcome),
            Some(_) if view.synced && seq <= view.seq => {}
            Some(change) if view.synced && seq == view.seq + 1 => {
                view.seq = seq;
                outcome.effects.extend(view.members.apply(&change));
                view.drain(&mut outcome.effects);
            }
            Some(change) if !view.synced && seq == 1 => {
                // Heard from its very first change: nothing came before.
                view.synced = true;
                view.seq = 1;
                outcome.effects.extend(view.members.apply(&change));
                view.drain(&mut outcome.effects);
            }
            Some(change) => {
                if view.pending.len() < MAX_PENDING {
                    view.pending.insert(seq, change);
                }
                view.ask(&instance, now, self.retry, &mut outcome);
            }
        }
        outcome
    }

    /// Takes in `instance`'s snapshot, which replaces its view unless it is
    /// older than the view.
    pub(crate) fn on_snapshot(
        &mut self,
        instance: &str,
        snapshot: Snapshot,
        now: Instant,
    ) -> Outcome {
        let mut outcome = Outcome::default();
        if instance == self.own {
            return outcome;
        }
        let view = self
            .nodes
            .entry(instance.to_owned())
            .or_insert_with(|| View::new(now));
        view.heard = now;
        view.asked = None;
        if view.synced && snapshot.seq < view.seq {
            return outcome;
        }
        let fresh = Memberships::from_snapshot(snapshot.rooms);
        for (room, nick) in view.members.pairs() {
            if !fresh.contains(room, nick) {
                outcome.effects.push(Effect::Left {
                    room: room.clone(),
                    nick: nick.clone(),
                    reason: None,
                });
            }
        }
        for (room, nick) in fresh.pairs() {
            if !view.members.contains(room, nick) {
                outcome.effects.push(Effect::Joined {
                    room: room.clone(),
                    nick: nick.clone(),
                });
            }
        }
        view.members = fresh;
        view.seq = snapshot.seq;
        view.synced = true;
        view.pending = view.pending.split_off(&(snapshot.seq + 1));
        view.drain(&mut outcome.effects);
        if !view.pending.is_empty() {
            // Still a gap after the snapshot: another one covers it.
            view.ask(instance, now, Duration::ZERO, &mut outcome);
        }
        outcome
    }

    /// Drops every node not heard from since `deadline`: their members
    /// leave, with `reason`.
    pub(crate) fn expire(&mut self, deadline: Instant, reason: &str) -> Vec<Effect> {
        let mut effects = Vec::new();
        self.nodes.retain(|_, view| {
            if view.heard >= deadline {
                return true;
            }
            effects.extend(view.members.pairs().map(|(room, nick)| Effect::Left {
                room: room.clone(),
                nick: nick.clone(),
                reason: Some(reason.to_owned()),
            }));
            false
        });
        effects
    }

    /// Whether `instance` is a node heard from (and not dropped as silent).
    pub(crate) fn knows(&self, instance: &str) -> bool {
        self.nodes.contains_key(instance)
    }

    /// The members of `room` on other nodes.
    pub(crate) fn members(&self, room: &RoomName) -> Vec<Nickname> {
        self.nodes
            .values()
            .flat_map(|view| view.members.nicks_in(room))
            .cloned()
            .collect()
    }

    /// The rooms with members on other nodes, with how many.
    pub(crate) fn rooms(&self) -> Vec<RoomInfo> {
        let mut rooms: BTreeMap<String, RoomInfo> = BTreeMap::new();
        for view in self.nodes.values() {
            for (name, nicks) in view.members.rooms.values() {
                rooms
                    .entry(name.key())
                    .or_insert_with(|| RoomInfo {
                        name: name.clone(),
                        members: 0,
                    })
                    .members += nicks.len();
            }
        }
        rooms.into_values().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn room(name: &str) -> RoomName {
        RoomName::new(name).unwrap()
    }

    fn nick(name: &str) -> Nickname {
        Nickname::new(name).unwrap()
    }

    fn joined(r: &str, n: &str) -> Change {
        Change::Joined {
            room: room(r),
            nick: nick(n),
        }
    }

    fn bulletin(instance: &str, seq: u64, change: Option<Change>) -> Bulletin {
        Bulletin {
            instance: instance.to_owned(),
            seq,
            change,
        }
    }

    fn views() -> Views {
        Views::new("me", Duration::from_secs(1))
    }

    #[test]
    fn changes_in_order_become_effects_and_listings() {
        let mut views = views();
        let now = Instant::now();
        let out = views.on_bulletin(bulletin("b", 1, Some(joined("lobby", "Ann"))), now);
        assert_eq!(
            out.effects,
            vec![Effect::Joined {
                room: room("lobby"),
                nick: nick("Ann")
            }]
        );
        assert_eq!(out.ask, None);
        views.on_bulletin(bulletin("b", 2, Some(joined("lobby", "bob"))), now);
        let out = views.on_bulletin(
            bulletin(
                "b",
                3,
                Some(Change::Renamed {
                    old: nick("ann"),
                    new: nick("anne"),
                }),
            ),
            now,
        );
        assert_eq!(
            out.effects,
            vec![Effect::Renamed {
                rooms: vec![room("lobby")],
                old: nick("ann"),
                new: nick("anne")
            }]
        );
        let mut members = views.members(&room("LOBBY"));
        members.sort_by_key(Nickname::key);
        assert_eq!(members, vec![nick("anne"), nick("bob")]);
        assert_eq!(
            views.rooms(),
            vec![RoomInfo {
                name: room("lobby"),
                members: 2
            }]
        );
    }

    #[test]
    fn own_bulletins_and_repeats_are_ignored() {
        let mut views = views();
        let now = Instant::now();
        assert_eq!(
            views.on_bulletin(bulletin("me", 1, Some(joined("a", "x"))), now),
            Outcome::default()
        );
        views.on_bulletin(bulletin("b", 1, Some(joined("a", "x"))), now);
        let again = views.on_bulletin(bulletin("b", 1, Some(joined("a", "y"))), now);
        assert_eq!(again, Outcome::default());
        assert_eq!(views.members(&room("a")), vec![nick("x")]);
    }

    #[test]
    fn a_gap_asks_for_a_snapshot_and_waits_for_it() {
        let mut views = views();
        let now = Instant::now();
        views.on_bulletin(bulletin("b", 1, Some(joined("a", "x"))), now);
        // Change 2 is lost; change 3 waits.
        let out = views.on_bulletin(bulletin("b", 3, Some(joined("a", "z"))), now);
        assert_eq!(out.effects, vec![]);
        assert_eq!(out.ask.as_deref(), Some("b"));
        // Asked once, not again within the retry interval.
        let out = views.on_bulletin(bulletin("b", 4, Some(joined("a", "w"))), now);
        assert_eq!(out.ask, None);
        // The snapshot as of change 2 (x left, y joined), then 3 and 4.
        let snapshot = Snapshot {
            seq: 2,
            rooms: vec![(room("a"), vec![nick("y")])],
        };
        let out = views.on_snapshot("b", snapshot, now);
        assert_eq!(
            out.effects,
            vec![
                Effect::Left {
                    room: room("a"),
                    nick: nick("x"),
                    reason: None
                },
                Effect::Joined {
                    room: room("a"),
                    nick: nick("y")
                },
                Effect::Joined {
                    room: room("a"),
                    nick: nick("z")
                },
                Effect::Joined {
                    room: room("a"),
                    nick: nick("w")
                },
            ]
        );
        assert_eq!(out.ask, None);
        let mut members = views.members(&room("a"));
        members.sort_by_key(Nickname::key);
        assert_eq!(members, vec![nick("w"), nick("y"), nick("z")]);
    }

    #[test]
    fn a_node_first_heard_mid_way_is_learnt_from_its_snapshot() {
        let mut views = views();
        let now = Instant::now();
        let out = views.on_bulletin(bulletin("b", 7, None), now);
        assert_eq!(out.ask.as_deref(), Some("b"));
        assert!(views.members(&room("a")).is_empty());
        let snapshot = Snapshot {
            seq: 7,
            rooms: vec![(room("a"), vec![nick("x"), nick("y")])],
        };
        let out = views.on_snapshot("b", snapshot, now);
        assert_eq!(out.effects.len(), 2);
        // A heartbeat at the same number is in step.
        assert_eq!(
            views.on_bulletin(bulletin("b", 7, None), now),
            Outcome::default()
        );
        // A heartbeat ahead means a lost change at the tail.
        let later = now + Duration::from_secs(2);
        assert_eq!(
            views
                .on_bulletin(bulletin("b", 8, None), later)
                .ask
                .as_deref(),
            Some("b")
        );
    }

    #[test]
    fn an_older_snapshot_is_ignored() {
        let mut views = views();
        let now = Instant::now();
        views.on_bulletin(bulletin("b", 1, Some(joined("a", "x"))), now);
        views.on_bulletin(bulletin("b", 2, Some(joined("a", "y"))), now);
        let stale = Snapshot {
            seq: 1,
            rooms: vec![(room("a"), vec![nick("x")])],
        };
        assert_eq!(views.on_snapshot("b", stale, now).effects, vec![]);
        assert_eq!(views.members(&room("a")).len(), 2);
    }

    #[test]
    fn a_silent_node_is_dropped_and_its_members_leave() {
        let mut views = views();
        let start = Instant::now();
        views.on_bulletin(bulletin("b", 1, Some(joined("a", "x"))), start);
        views.on_bulletin(bulletin("c", 0, None), start + Duration::from_secs(3));
        let effects = views.expire(start + Duration::from_secs(1), "gone");
        assert_eq!(
            effects,
            vec![Effect::Left {
                room: room("a"),
                nick: nick("x"),
                reason: Some("gone".to_owned())
            }]
        );
        assert!(views.members(&room("a")).is_empty());
        assert!(views.rooms().is_empty());
    }

    #[test]
    fn local_presence_numbers_only_real_changes() {
        let mut local = LocalPresence::default();
        assert_eq!(local.record(&joined("a", "x")), Some(1));
        assert_eq!(local.record(&joined("a", "X")), None);
        let leave = Change::Left {
            room: room("b"),
            nick: nick("x"),
            reason: None,
        };
        assert_eq!(local.record(&leave), None);
        assert_eq!(local.record(&joined("b", "x")), Some(2));
        assert_eq!(local.seq(), 2);
        let snapshot = local.snapshot();
        assert_eq!(snapshot.seq, 2);
        assert_eq!(
            snapshot.rooms,
            vec![(room("a"), vec![nick("x")]), (room("b"), vec![nick("x")])]
        );
    }

    #[test]
    fn bulletins_travel_as_json() {
        let b = bulletin("b", 3, Some(joined("a", "x")));
        let json = serde_json::to_string(&b).unwrap();
        assert_eq!(
            json,
            r#"{"instance":"b","seq":3,"change":{"change":"joined","room":"a","nick":"x"}}"#
        );
        assert_eq!(serde_json::from_str::<Bulletin>(&json).unwrap(), b);
        let heartbeat = serde_json::to_string(&bulletin("b", 3, None)).unwrap();
        assert_eq!(heartbeat, r#"{"instance":"b","seq":3}"#);
    }
}
