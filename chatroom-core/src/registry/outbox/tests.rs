//! The queue's own tests: bounds, wake-ups, order under any interleaving.

use super::*;
use crate::protocol::ServerMessage;

fn frames(taken: Result<Taken, CutReason>) -> Result<usize, CutReason> {
    taken.map(|t| t.frames)
}

#[test]
fn a_take_says_how_many_bytes_it_moved_and_whether_a_bye_is_among_them() {
    let (tx, rx) = outbox(16, 1 << 20, QueueBudget::unlimited());
    let pong = Outbound::message(ServerMessage::Pong);
    let bye = Outbound::message(ServerMessage::Bye { reason: "x".into() });
    tx.push(&pong).unwrap();
    tx.offer(&pong).unwrap();
    let mut buf = VecDeque::new();
    let first = rx.queue.take(&mut buf, 0);
    assert_eq!(first.frames, 2);
    assert_eq!(first.bytes, 2 * pong.json().len());
    assert!(!first.bye);
    assert_eq!(tx.queued_bytes(), first.bytes, "taken, not yet written");
    tx.push(&bye).unwrap();
    let second = rx.queue.take(&mut buf, first.bytes);
    assert_eq!(
        (second.frames, second.bytes, second.bye),
        (1, bye.json().len(), true)
    );
    assert_eq!(tx.queued_bytes(), bye.json().len());
    assert!(!rx.queue.take(&mut buf, second.bytes).bye);
    assert_eq!(tx.queued_bytes(), 0);
}

#[test]
fn own_frames_past_twice_the_frame_bound_cut_off() {
    let (tx, rx) = outbox(2, 1 << 20, QueueBudget::unlimited());
    let f = Outbound::message(ServerMessage::Pong);
    for _ in 0..4 {
        tx.push(&f).unwrap();
    }
    assert_eq!(tx.push(&f), Err(PushError::Full));
    assert_eq!(tx.push(&f), Err(PushError::Closed));
    assert_eq!(rx.cut_reason(), Some(CutReason::SlowConsumer));
}

#[test]
fn own_frames_past_twice_the_byte_bound_cut_off() {
    let f = Outbound::message(ServerMessage::Pong);
    let len = f.json().len();
    let (tx, rx) = outbox(100, len * 3, QueueBudget::unlimited());
    for _ in 0..6 {
        tx.push(&f).unwrap();
    }
    assert_eq!(tx.push(&f), Err(PushError::Full));
    // Written bytes given back do not reopen a queue that was cut off.
    let mut buf = VecDeque::new();
    assert_eq!(rx.queue.take(&mut buf, 0).frames, 6);
    assert_eq!(rx.queue.take(&mut buf, 6 * len).frames, 0);
    assert!(tx.is_closed());
}

#[test]
fn a_queue_full_of_room_traffic_still_takes_the_sessions_own_frames() {
    let (tx, rx) = outbox(2, 1 << 20, QueueBudget::unlimited());
    let room = Outbound::message(ServerMessage::Pong);
    tx.offer(&room).unwrap();
    tx.offer(&room).unwrap();
    // Room traffic stops at the bound, and the session stays.
    assert_eq!(tx.offer(&room), Err(PushError::Full));
    assert_eq!(rx.cut_reason(), None);
    // A reply still fits.
    tx.push(&Outbound::message(ServerMessage::Pong)).unwrap();
    assert_eq!(rx.cut_reason(), None);
}

#[tokio::test]
async fn a_parked_writer_is_woken_by_a_push_and_takes_everything_queued() {
    let (tx, mut rx) = outbox(16, 1 << 20, QueueBudget::unlimited());
    let f = Outbound::message(ServerMessage::Pong);
    let writer = tokio::spawn(async move {
        let mut buf = VecDeque::new();
        let mut got = 0;
        while got < 5 {
            got += rx.next_batch(&mut buf, &mut 0).await.unwrap().frames;
        }
        (got, rx)
    });
    tokio::task::yield_now().await;
    for _ in 0..5 {
        tx.push(&f).unwrap();
    }
    let (got, _rx) = tokio::time::timeout(std::time::Duration::from_secs(5), writer)
        .await
        .expect("the writer was woken")
        .unwrap();
    assert_eq!(got, 5);
}

#[tokio::test]
async fn the_writer_drains_what_is_left_after_the_last_sender_goes() {
    let (tx, mut rx) = outbox(16, 1 << 20, QueueBudget::unlimited());
    let f = Outbound::message(ServerMessage::Pong);
    tx.push(&f).unwrap();
    tx.push(&f).unwrap();
    drop(tx);
    let mut buf = VecDeque::new();
    assert_eq!(frames(rx.next_batch(&mut buf, &mut 0).await), Ok(2));
    assert_eq!(frames(rx.next_batch(&mut buf, &mut 0).await), Ok(0));
    assert_eq!(buf.len(), 2);
}

#[test]
fn a_gone_writer_closes_the_queue_and_frees_its_frames() {
    let (tx, rx) = outbox(16, 1 << 20, QueueBudget::unlimited());
    let f = Outbound::message(ServerMessage::Pong);
    tx.push(&f).unwrap();
    drop(rx);
    assert!(tx.is_closed());
    assert_eq!(tx.offer(&f), Err(PushError::Closed));
    assert_eq!(Arc::strong_count(&f), 1);
}

#[tokio::test(start_paused = true)]
async fn a_parked_writer_gives_back_large_lists_after_a_quiet_second_and_keeps_small_ones() {
    let (tx, mut rx) = outbox(1024, 1 << 20, QueueBudget::unlimited());
    let f = Outbound::message(ServerMessage::Pong);
    for _ in 0..500 {
        tx.push(&f).unwrap();
    }
    let mut buf = VecDeque::new();
    assert_eq!(frames(rx.next_batch(&mut buf, &mut 0).await), Ok(500));
    // The batch is the queue's own list; the queue got the writer's.
    assert!(buf.capacity() >= 500);
    assert_eq!(rx.queue.frames().list.capacity(), 0);
    // A burst refills the queue; the lists trade places and keep their
    // room.
    buf.clear();
    for _ in 0..200 {
        tx.push(&f).unwrap();
    }
    assert_eq!(frames(rx.next_batch(&mut buf, &mut 0).await), Ok(200));
    assert!(rx.queue.frames().list.capacity() >= 500);
    // The writer parks with large lists and the next burst comes within
    // the second: nothing was given back, nothing regrows.
    buf.clear();
    let mut none = 0;
    let (taken, ()) = tokio::join!(rx.next_batch(&mut buf, &mut none), async {
        tokio::time::sleep(KEEP_LISTS / 2).await;
        tx.push(&f).unwrap();
    });
    assert_eq!(frames(taken), Ok(1));
    assert!(buf.capacity() >= 200 && rx.queue.frames().list.capacity() >= 200);
    // A quiet second: both lists are given back while the writer waits.
    buf.clear();
    let mut none = 0;
    let (taken, ()) = tokio::join!(rx.next_batch(&mut buf, &mut none), async {
        tokio::time::sleep(KEEP_LISTS * 2).await;
        assert_eq!(rx_lists(&tx), 0);
        tx.push(&f).unwrap();
    });
    assert_eq!(frames(taken), Ok(1));
    assert!(buf.capacity() <= KEEP_SLOTS);
    // Small ones are kept: a connection that chats does not reallocate.
    buf.clear();
    let parked = futures::poll!(std::pin::pin!(rx.next_batch(&mut buf, &mut 0)));
    assert!(parked.is_pending());
    assert!(buf.capacity() > 0 || rx.queue.frames().list.capacity() > 0);
}

/// The capacity of the queue's own list, seen from the sending side.
fn rx_lists(tx: &Outbox) -> usize {
    tx.queue().frames().list.capacity()
}

#[tokio::test]
async fn a_cut_off_reaches_a_parked_writer_and_one_stuck_in_a_write() {
    let (tx, mut rx) = outbox(16, 1 << 20, QueueBudget::unlimited());
    let mut buf = VecDeque::new();
    let parked = futures::poll!(std::pin::pin!(rx.next_batch(&mut buf, &mut 0)));
    assert!(parked.is_pending());
    let (stuck, ()) = tokio::join!(rx.cut(), async {
        tokio::task::yield_now().await;
        tx.cut_off(CutReason::NickLost);
    });
    assert_eq!(stuck, CutReason::NickLost);
    assert_eq!(
        frames(rx.next_batch(&mut buf, &mut 0).await),
        Err(CutReason::NickLost)
    );
}

/// A producer on another thread and the writer on the runtime, racing
/// on a small queue: no wake-up is lost (the writer would hang) and
/// nothing is reordered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_racing_producer_and_writer_lose_no_wake_up() {
    const FRAMES: usize = 20_000;
    let (tx, mut rx) = outbox(8, 1 << 20, QueueBudget::unlimited());
    let producer = std::thread::spawn(move || {
        for n in 0..FRAMES {
            let frame = Outbound::message(ServerMessage::Notice {
                text: n.to_string(),
            });
            while tx.offer(&frame) == Err(PushError::Full) {
                std::thread::yield_now();
            }
        }
    });
    let writer = async {
        let mut buf = VecDeque::new();
        let mut next = 0;
        let mut written = 0;
        loop {
            let taken = rx.next_batch(&mut buf, &mut written).await.unwrap();
            if taken.frames == 0 {
                return next;
            }
            written = taken.bytes;
            for entry in buf.drain(..) {
                for frame in entry.frames() {
                    let ServerMessage::Notice { text } = &frame.frame().message else {
                        unreachable!()
                    };
                    assert_eq!(text.parse::<usize>().unwrap(), next);
                    next += 1;
                }
            }
        }
    };
    let got = tokio::time::timeout(std::time::Duration::from_secs(30), writer)
        .await
        .expect("the writer was left parked with frames queued");
    producer.join().unwrap();
    assert_eq!(got, FRAMES);
}

/// One step of a producer and the writer working on one queue.
#[derive(Debug, Clone)]
enum Step {
    /// A room offers a frame of this many extra bytes.
    Offer(usize),
    /// The writer takes what is queued and writes up to this many frames.
    Take(usize),
}

fn step() -> impl proptest::strategy::Strategy<Value = Step> {
    use proptest::prelude::*;
    prop_oneof![
        3 => (0usize..200).prop_map(Step::Offer),
        1 => (1usize..8).prop_map(Step::Take),
    ]
}

proptest::proptest! {
    /// Whatever the interleaving of offers and takes, the writer gets
    /// every accepted frame once, in the order offered; an offer is
    /// refused only when the queue is at its frame or byte bound; and
    /// the byte count returns to zero once everything is written.
    #[test]
    fn every_accepted_frame_is_taken_once_in_order(
        steps in proptest::collection::vec(step(), 1..300),
        max_frames in 1usize..16,
        max_bytes in 64usize..2048,
    ) {
        let (tx, rx) = outbox(max_frames, max_bytes, QueueBudget::unlimited());
        let mut accepted = Vec::new();
        let mut taken = Vec::new();
        let mut writer = VecDeque::new();
        let number = |frame: &Outbound| {
            let ServerMessage::Notice { text } = &frame.frame().message else {
                unreachable!()
            };
            text.split(':').next().unwrap().parse::<usize>().unwrap()
        };
        let mut queued_frames = 0usize;
        // Bytes not yet given back: queued, or written since the last take
        // (a writer gives them back with its next take).
        let mut queued_bytes = 0usize;
        let mut written = 0usize;
        for (n, step) in steps.into_iter().enumerate() {
            match step {
                Step::Offer(extra) => {
                    let frame = Outbound::message(ServerMessage::Notice {
                        text: format!("{n}:{}", "x".repeat(extra)),
                    });
                    let len = frame.json().len();
                    let fits = queued_frames < max_frames
                        && (queued_bytes == 0 || queued_bytes + len <= max_bytes);
                    match tx.offer(&frame) {
                        Ok(()) => {
                            proptest::prop_assert!(fits);
                            accepted.push(n);
                            queued_frames += 1;
                            queued_bytes += len;
                        }
                        Err(e) => {
                            proptest::prop_assert_eq!(e, PushError::Full);
                            proptest::prop_assert!(!fits);
                        }
                    }
                }
                Step::Take(limit) => {
                    // The writer takes everything queued behind what it
                    // still holds, then writes up to `limit` frames.
                    let held = writer.len();
                    let got = rx.queue.take(&mut writer, written);
                    queued_bytes -= written;
                    written = 0;
                    proptest::prop_assert_eq!(got.frames, writer.len() - held);
                    proptest::prop_assert_eq!(
                        got.bytes,
                        writer.iter().skip(held).map(|f| f.json().len()).sum::<usize>()
                    );
                    // The frame bound counts what waits in the queue; the
                    // byte bound, what is not written yet.
                    queued_frames -= got.frames;
                    for frame in writer.drain(..limit.min(writer.len())) {
                        written += frame.json().len();
                        taken.extend(frame.frames().iter().map(|f| number(f)));
                    }
                }
            }
        }
        queued_frames -= rx.queue.take(&mut writer, written).frames;
        written = 0;
        for frame in writer.drain(..) {
            written += frame.json().len();
            taken.extend(frame.frames().iter().map(|f| number(f)));
        }
        rx.queue.take(&mut writer, written);
        proptest::prop_assert_eq!(queued_frames, 0);
        proptest::prop_assert_eq!(taken, accepted);
        proptest::prop_assert_eq!(tx.queued_bytes(), 0);
        proptest::prop_assert!(!tx.is_closed());
    }
}

/// A frame of about `bytes` bytes of JSON.
fn sized(bytes: usize) -> Arc<Outbound> {
    Outbound::message(ServerMessage::Notice {
        text: "x".repeat(bytes.saturating_sub(30)),
    })
}

#[test]
fn a_run_stops_at_the_bounds_as_frames_offered_one_by_one_do() {
    let run: Vec<_> = (0..4).map(|_| sized(600)).collect();
    let bytes: usize = run.iter().map(|f| f.json().len()).sum();
    let each = run[0].json().len();
    // Room for two frames by bytes: the whole run does not fit, two do.
    let (tx, _rx) = outbox(64, 2 * each + 10, QueueBudget::unlimited());
    assert_eq!(
        tx.offer_slice(&run, bytes, false, None),
        (2, Some(PushError::Full))
    );
    // An empty queue takes one frame larger than its byte bound, and no
    // more, whether offered alone or in a run.
    let (tx, _rx) = outbox(64, each / 2, QueueBudget::unlimited());
    assert_eq!(
        tx.offer_slice(&run, bytes, false, None),
        (1, Some(PushError::Full))
    );
    // By frames: the run fits whole or frame by frame up to the bound.
    let (tx, _rx) = outbox(3, 1 << 20, QueueBudget::unlimited());
    assert_eq!(
        tx.offer_slice(&run, bytes, false, None),
        (3, Some(PushError::Full))
    );
    let (tx, _rx) = outbox(4, 1 << 20, QueueBudget::unlimited());
    assert_eq!(tx.offer_slice(&run, bytes, false, None), (4, None));
    assert_eq!(tx.queued_bytes(), bytes);
}

#[test]
fn a_run_that_fits_whole_is_queued_as_its_joined_lines_and_one_that_does_not_frame_by_frame() {
    let run: Vec<_> = (0..4).map(|n| sized(600 + n)).collect();
    let bytes: usize = run.iter().map(|f| f.json().len()).sum();
    let joined = JoinedRun::new(&run, bytes);
    let lines: Vec<u8> = run.iter().flat_map(|f| f.json().to_vec()).collect();

    let (tx, rx) = outbox(64, 1 << 20, QueueBudget::unlimited());
    assert_eq!(tx.offer_slice(&run, bytes, false, Some(&joined)), (4, None));
    assert_eq!(tx.queued_bytes(), bytes);
    let mut writer = VecDeque::new();
    let taken = rx.queue.take(&mut writer, 0);
    assert_eq!((taken.frames, taken.bytes), (1, bytes));
    assert_eq!(writer.len(), 1);
    assert_eq!(writer[0].json()[..], lines[..]);
    assert_eq!(writer[0].frames().len(), 4);

    // Taken one by one, a joined run comes out as its frames, in order,
    // and leaves nothing counted.
    let (tx, mut rx) = outbox(64, 1 << 20, QueueBudget::unlimited());
    tx.offer_slice(&run, bytes, false, Some(&joined));
    let got: Vec<_> = std::iter::from_fn(|| rx.try_recv()).collect();
    assert_eq!(got.len(), 4);
    assert!(got.iter().zip(&run).all(|(a, b)| Arc::ptr_eq(a, b)));
    assert_eq!(tx.queued_bytes(), 0);

    // Room for two by bytes: the run goes frame by frame up to the bound,
    // each its own entry, and the joined lines are not used.
    let each = run[3].json().len();
    let (tx, rx) = outbox(64, 2 * each + 10, QueueBudget::unlimited());
    assert_eq!(
        tx.offer_slice(&run, bytes, false, Some(&joined)),
        (2, Some(PushError::Full))
    );
    let mut writer = VecDeque::new();
    assert_eq!(rx.queue.take(&mut writer, 0).frames, 2);
    assert!(writer.iter().all(|e| e.frames().len() == 1));
}

#[test]
fn a_spent_budget_holds_room_traffic_back_and_takes_only_a_little_of_a_sessions_own() {
    let budget = QueueBudget::new(4 * CREDIT_STEP);
    let (a, a_rx) = outbox(1000, 1 << 20, budget.clone());
    let (b, _b_rx) = outbox(1000, 1 << 20, budget.clone());
    let frame = sized(1000);
    let len = frame.json().len();
    let mut queued = 0;
    while a.offer(&frame).is_ok() {
        queued += 1;
    }
    // Room traffic stopped at the free allowance plus the budget, far
    // below the queue's own bound, and the session stays.
    assert!(
        queued * len <= UNBUDGETED_BYTES + 4 * CREDIT_STEP,
        "{queued}"
    );
    assert!(queued * len > UNBUDGETED_BYTES, "{queued}");
    assert!(!a.is_closed());
    assert_eq!(budget.reserved(), 4 * CREDIT_STEP);
    // Another queue still takes room traffic up to its free allowance.
    let mut free = 0;
    while b.offer(&frame).is_ok() {
        free += 1;
    }
    assert!(free * len <= UNBUDGETED_BYTES && (free + 1) * len > UNBUDGETED_BYTES);
    assert!(!b.is_closed());
    // Its own replies still fit beyond that, up to a few kilobytes.
    let mut own = 0;
    while b.push(&frame).is_ok() {
        own += 1;
    }
    assert!(
        own > 0 && own * len <= OWN_FRAMES_BEYOND_BUDGET + len,
        "{own}"
    );
    assert!(
        b.is_closed(),
        "a session not reading its replies is cut off"
    );
    // A's writer writes what it took: its share goes back to the budget.
    let mut buf = VecDeque::new();
    let taken = a_rx.queue.take(&mut buf, 0);
    assert_eq!(taken.frames, queued);
    a_rx.queue.take(&mut buf, taken.bytes);
    assert_eq!(budget.reserved(), 0);
}

#[test]
fn a_queue_gives_its_share_of_the_budget_back_when_it_goes() {
    let budget = QueueBudget::new(1 << 20);
    let (tx, rx) = outbox(1000, 1 << 20, budget.clone());
    for _ in 0..100 {
        tx.offer(&sized(1000)).unwrap();
    }
    assert!(budget.reserved() >= 100 * 1000 - UNBUDGETED_BYTES);
    drop(rx);
    drop(tx);
    assert_eq!(budget.reserved(), 0);
}

#[test]
fn text_rendering_is_lazy_and_shared() {
    let f = Outbound::message(ServerMessage::Pong);
    assert!(f.text().is_none());
    let f = Outbound::message(ServerMessage::Bye { reason: "x".into() });
    let a = f.text().unwrap().as_ptr();
    let b = f.text().unwrap().as_ptr();
    assert_eq!(a, b);
}
