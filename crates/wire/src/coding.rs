//! Primitives every frame is built from: LEB128 varints, length-prefixed byte strings, options,
//! counts, and a [`Reader`] that turns running out of bytes into [`WireError`]s instead of
//! panics.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::error::WireError;

/// The longest LEB128 encoding of a `u64`.
const MAX_VARINT_LEN: usize = 10;

/// Appends `v` as an unsigned LEB128 varint (1 byte below 128, at most 10 bytes).
#[inline]
pub(crate) fn put_varint(buf: &mut BytesMut, mut v: u64) {
    if v < 0x80 {
        buf.put_u8(v as u8);
        return;
    }
    let mut tmp = [0u8; MAX_VARINT_LEN];
    let mut i = 0;
    while v >= 0x80 {
        tmp[i] = (v as u8) | 0x80;
        v >>= 7;
        i += 1;
    }
    tmp[i] = v as u8;
    buf.put_slice(&tmp[..=i]);
}

/// Appends a byte string: its length as a varint, then the bytes.
#[inline]
pub(crate) fn put_bytes(buf: &mut BytesMut, bytes: &[u8]) {
    put_varint(buf, bytes.len() as u64);
    buf.put_slice(bytes);
}

/// Appends an element count.
#[inline]
pub(crate) fn put_count(buf: &mut BytesMut, count: usize) {
    put_varint(buf, count as u64);
}

/// Appends an option: `0x00`, or `0x01` followed by what `put` writes.
#[inline]
pub(crate) fn put_option<T>(buf: &mut BytesMut, v: Option<T>, put: impl FnOnce(&mut BytesMut, T)) {
    match v {
        None => buf.put_u8(0),
        Some(v) => {
            buf.put_u8(1);
            put(buf, v);
        }
    }
}

/// Most elements a decoder reserves room for up front, whatever a count claims. A valid count is
/// bounded by the frame length anyway; this keeps a forged one from reserving `len` times the
/// element size before the elements fail to decode.
const MAX_PREALLOC: usize = 1024;

/// Reads fields off a frame body. Byte strings are split off the body, so they share its
/// allocation (no copy).
pub(crate) struct Reader {
    buf: Bytes,
}

impl Reader {
    /// A reader over one frame body.
    pub(crate) fn new(buf: Bytes) -> Self {
        Reader { buf }
    }

    fn truncated(&self, field: &'static str, needed: usize) -> WireError {
        WireError::Truncated {
            field,
            needed: needed as u64,
            remaining: self.buf.len() as u64,
        }
    }

    /// One byte.
    #[inline]
    pub(crate) fn u8(&mut self, field: &'static str) -> Result<u8, WireError> {
        match self.buf.first() {
            Some(&b) => {
                self.buf.advance(1);
                Ok(b)
            }
            None => Err(self.truncated(field, 1)),
        }
    }

    /// A big-endian `u16`.
    pub(crate) fn u16_be(&mut self, field: &'static str) -> Result<u16, WireError> {
        Ok(u16::from_be_bytes(self.array(field)?))
    }

    /// A big-endian `u32`.
    pub(crate) fn u32_be(&mut self, field: &'static str) -> Result<u32, WireError> {
        Ok(u32::from_be_bytes(self.array(field)?))
    }

    /// `N` raw bytes.
    pub(crate) fn array<const N: usize>(
        &mut self,
        field: &'static str,
    ) -> Result<[u8; N], WireError> {
        match self.buf.get(..N) {
            Some(s) => {
                let mut out = [0u8; N];
                out.copy_from_slice(s);
                self.buf.advance(N);
                Ok(out)
            }
            None => Err(self.truncated(field, N)),
        }
    }

    /// An unsigned LEB128 varint. Overlong encodings are accepted; more than 64 bits are not.
    #[inline]
    pub(crate) fn varint(&mut self, field: &'static str) -> Result<u64, WireError> {
        let s: &[u8] = &self.buf;
        // Fast path: most ids, slots, lengths and counts are below 128.
        if let Some(&b) = s.first() {
            if b < 0x80 {
                self.buf.advance(1);
                return Ok(u64::from(b));
            }
        }
        let mut v = 0u64;
        for (i, &b) in s.iter().take(MAX_VARINT_LEN).enumerate() {
            if i == MAX_VARINT_LEN - 1 && b > 1 {
                // The tenth byte holds bit 63 only; anything else overflows or continues.
                return Err(WireError::BadVarint { field });
            }
            v |= u64::from(b & 0x7f) << (7 * i);
            if b < 0x80 {
                self.buf.advance(i + 1);
                return Ok(v);
            }
        }
        if s.len() >= MAX_VARINT_LEN {
            Err(WireError::BadVarint { field })
        } else {
            Err(self.truncated(field, s.len() + 1))
        }
    }

    /// A varint that must fit in a `u32`.
    pub(crate) fn varint_u32(&mut self, field: &'static str) -> Result<u32, WireError> {
        let v = self.varint(field)?;
        u32::try_from(v).map_err(|_| WireError::OutOfRange {
            field,
            value: v,
            max: u32::MAX.into(),
        })
    }

    /// A varint that must fit in a `usize`.
    pub(crate) fn varint_usize(&mut self, field: &'static str) -> Result<usize, WireError> {
        let v = self.varint(field)?;
        usize::try_from(v).map_err(|_| WireError::OutOfRange {
            field,
            value: v,
            max: usize::MAX as u64,
        })
    }

    /// A length-prefixed byte string, sliced out of the frame without copying.
    #[inline]
    pub(crate) fn bytes(&mut self, field: &'static str) -> Result<Bytes, WireError> {
        let len = self.varint(field)?;
        if len > self.buf.len() as u64 {
            return Err(WireError::Truncated {
                field,
                needed: len,
                remaining: self.buf.len() as u64,
            });
        }
        Ok(self.buf.split_to(len as usize))
    }

    /// An element count, checked against the bytes left: each element takes at least
    /// `min_elem_len` bytes (at least 1), so a count the frame cannot hold is refused before
    /// anything is allocated for it.
    pub(crate) fn count(
        &mut self,
        field: &'static str,
        min_elem_len: usize,
    ) -> Result<usize, WireError> {
        let count = self.varint(field)?;
        let fits = (self.buf.len() / min_elem_len.max(1)) as u64;
        if count > fits {
            return Err(WireError::CountTooLarge {
                field,
                count,
                remaining: self.buf.len() as u64,
            });
        }
        Ok(count as usize)
    }

    /// A vector for `count` elements, reserving at most [`MAX_PREALLOC`] up front.
    pub(crate) fn vec_for<T>(count: usize) -> Vec<T> {
        Vec::with_capacity(count.min(MAX_PREALLOC))
    }

    /// An option's presence byte: `0x00` absent, `0x01` present.
    #[inline]
    pub(crate) fn option(&mut self, field: &'static str) -> Result<bool, WireError> {
        match self.u8(field)? {
            0 => Ok(false),
            1 => Ok(true),
            tag => Err(WireError::UnknownTag { what: field, tag }),
        }
    }

    /// Ends a frame: nothing may be left.
    pub(crate) fn finish(self, kind: &'static str) -> Result<(), WireError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(WireError::TrailingBytes {
                kind,
                extra: self.buf.len() as u64,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(v: u64) -> (usize, u64) {
        let mut buf = BytesMut::new();
        put_varint(&mut buf, v);
        let len = buf.len();
        let mut r = Reader::new(buf.freeze());
        (len, r.varint("v").unwrap())
    }

    #[test]
    fn varints_round_trip_at_every_width() {
        for shift in 0..64 {
            for v in [1u64 << shift, (1u64 << shift) - 1, (1u64 << shift) + 1] {
                assert_eq!(roundtrip(v).1, v);
            }
        }
        assert_eq!(roundtrip(0), (1, 0));
        assert_eq!(roundtrip(127), (1, 127));
        assert_eq!(roundtrip(128), (2, 128));
        assert_eq!(roundtrip(u64::MAX), (10, u64::MAX));
    }

    #[test]
    fn varints_over_64_bits_are_refused() {
        // Ten bytes whose last carries more than bit 63.
        let mut bytes = vec![0xff; 9];
        bytes.push(0x02);
        let mut r = Reader::new(Bytes::from(bytes));
        assert_eq!(r.varint("f"), Err(WireError::BadVarint { field: "f" }));
        // Eleven continuation bytes.
        let mut r = Reader::new(Bytes::from(vec![0x80; 11]));
        assert_eq!(r.varint("f"), Err(WireError::BadVarint { field: "f" }));
    }

    #[test]
    fn a_truncated_varint_names_its_field() {
        let mut r = Reader::new(Bytes::from_static(&[0x80, 0x80]));
        assert_eq!(
            r.varint("Accept.slot"),
            Err(WireError::Truncated {
                field: "Accept.slot",
                needed: 3,
                remaining: 2
            })
        );
    }

    #[test]
    fn byte_strings_share_the_frame_allocation() {
        let mut buf = BytesMut::new();
        put_bytes(&mut buf, b"hello");
        let body = buf.freeze();
        let base = body.as_ptr() as usize;
        let mut r = Reader::new(body);
        let s = r.bytes("k").unwrap();
        assert_eq!(&s[..], b"hello");
        assert_eq!(s.as_ptr() as usize, base + 1, "sliced, not copied");
    }

    #[test]
    fn counts_the_frame_cannot_hold_are_refused() {
        let mut buf = BytesMut::new();
        put_varint(&mut buf, 1 << 40);
        buf.put_slice(&[0; 10]);
        let mut r = Reader::new(buf.freeze());
        assert_eq!(
            r.count("Learn.entries", 2),
            Err(WireError::CountTooLarge {
                field: "Learn.entries",
                count: 1 << 40,
                remaining: 10
            })
        );
    }
}
