//! A forged length or count must not make the decoder allocate: measured with a counting global
//! allocator (per thread, so tests running in parallel do not disturb each other).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use bytes::{BufMut, BytesMut};
use paxos::Message;
use wire::{decode_frame, ClientFrame, Codec, PeerFrame, WireError, DEFAULT_MAX_FRAME_LEN};

struct Counting;

thread_local! {
    static ALLOCATED: Cell<usize> = const { Cell::new(0) };
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATED.with(|a| a.set(a.get() + layout.size()));
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `alloc` above, i.e. from the system allocator.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATED.with(|a| a.set(a.get() + new_size.saturating_sub(layout.size())));
        // SAFETY: as for `dealloc`; the caller upholds `realloc`'s contract.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Bytes allocated on this thread while `f` runs.
fn allocated_by<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let before = ALLOCATED.with(Cell::get);
    let out = f();
    (out, ALLOCATED.with(Cell::get) - before)
}

fn prefix(len: u32) -> BytesMut {
    let mut buf = BytesMut::with_capacity(64);
    buf.put_u32(len);
    buf
}

#[test]
fn an_oversized_prefix_is_refused_without_allocating() {
    for len in [DEFAULT_MAX_FRAME_LEN as u32 + 1, 1 << 30, u32::MAX] {
        let mut buf = prefix(len);
        let (res, bytes) = allocated_by(|| decode_frame::<PeerFrame>(&mut buf));
        assert_eq!(
            res,
            Err(WireError::FrameTooLarge {
                len: len.into(),
                max: DEFAULT_MAX_FRAME_LEN as u64
            })
        );
        assert_eq!(bytes, 0, "allocated {bytes} bytes for a {len}-byte prefix");
        assert_eq!(buf.capacity(), 64, "the read buffer was not grown");
    }
}

#[test]
fn a_frame_at_the_limit_waits_without_reserving_its_body() {
    let mut buf = prefix(DEFAULT_MAX_FRAME_LEN as u32);
    let (res, bytes) = allocated_by(|| decode_frame::<PeerFrame>(&mut buf));
    assert_eq!(res, Ok(None));
    assert_eq!(bytes, 0);
}

#[test]
fn forged_counts_do_not_reserve_what_they_claim() {
    // A Learn claiming 2^40 entries in a 20-byte body.
    let mut buf = prefix(20);
    buf.put_u8(0x08);
    buf.put_slice(&[0x80, 0x80, 0x80, 0x80, 0x80, 0x20]); // 2^40 as a varint
    buf.put_slice(&[0; 13]);
    let (res, bytes) = allocated_by(|| decode_frame::<Message>(&mut buf));
    assert!(
        matches!(
            res,
            Err(WireError::CountTooLarge {
                field: "Learn.entries",
                ..
            })
        ),
        "{res:?}"
    );
    assert!(bytes < 1024, "allocated {bytes} bytes");

    // A batch whose count the frame could hold (1 MiB of 4-byte commands), followed by garbage:
    // the decoder must not reserve room for all 131 072 commands before the first one fails.
    // (2^17 commands of ~80 bytes each would be ~10 MiB.)
    let body_len = 1 << 20;
    let mut buf = BytesMut::with_capacity(body_len + 4);
    buf.put_u32(body_len as u32);
    buf.put_slice(&[0x03, 0x01, 0x01, 0x01, 0x00, 0x00, 0x01]); // Accept, ballot, slots, batch tag
    buf.put_u8(0x00); // the batch's stamp
    buf.put_slice(&[0x80, 0x80, 0x08]); // count 2^17
    buf.put_u8(0xff); // a command whose client varint never ends
    buf.resize(body_len + 4, 0xff);
    let (res, bytes) = allocated_by(|| decode_frame::<Message>(&mut buf));
    assert!(
        matches!(
            res,
            Err(WireError::BadVarint {
                field: "Command.client"
            })
        ),
        "{res:?}"
    );
    assert!(bytes < 256 * 1024, "allocated {bytes} bytes");
}

#[test]
fn a_smaller_configured_limit_applies_before_allocating() {
    let codec = Codec::new(1024);
    let mut buf = prefix(1025);
    let (res, bytes) = allocated_by(|| codec.decode::<ClientFrame>(&mut buf));
    assert_eq!(
        res,
        Err(WireError::FrameTooLarge {
            len: 1025,
            max: 1024
        })
    );
    assert_eq!(bytes, 0);
}

#[test]
fn a_forged_reply_window_does_not_reserve_what_it_claims() {
    // A Snapshot whose one session claims a window of 2^20 replies, then garbage.
    let body_len = 1 << 20;
    let mut buf = BytesMut::with_capacity(body_len + 4);
    buf.put_u32(body_len as u32);
    // Snapshot: upto, cache limit, session timeout, clock, next sweep, no entries, 1 session
    buf.put_slice(&[0x0a, 0x00, 0x01, 0x01, 0x00, 0x00, 0x00, 0x01]);
    // client (created 0, nonce 1), last active 0, base 0, ~2^20 replies
    buf.put_slice(&[0x00, 0x01, 0x00, 0x00, 0x80, 0x80, 0x3f]);
    buf.put_u8(0x07); // a reply whose option byte is invalid
    buf.resize(body_len + 4, 0);
    let (res, bytes) = allocated_by(|| decode_frame::<Message>(&mut buf));
    assert!(
        matches!(
            res,
            Err(WireError::UnknownTag {
                what: "Session.reply",
                tag: 7
            })
        ),
        "{res:?}"
    );
    assert!(bytes < 256 * 1024, "allocated {bytes} bytes");
}
