//! Cutting a byte stream into fixed-size chunks without holding the whole stream.

use bytes::{Bytes, BytesMut};

/// The default chunk size: 1 MiB. Most Gutenberg books fit in one to three chunks.
pub const DEFAULT_CHUNK_SIZE: usize = 1024 * 1024;

/// The largest chunk size a node accepts (a chunk is held in memory while it is
/// verified, so this bounds memory per transfer).
pub const MAX_CHUNK_SIZE: usize = 64 * 1024 * 1024;

/// Accumulates pushed bytes and yields chunks of exactly `chunk_size` bytes; the last
/// chunk of a stream, from [`Chunker::finish`], may be shorter.
#[derive(Debug)]
pub struct Chunker {
    chunk_size: usize,
    buf: BytesMut,
}

impl Chunker {
    /// `chunk_size` must be between 1 and [`MAX_CHUNK_SIZE`].
    pub fn new(chunk_size: usize) -> Self {
        assert!(
            (1..=MAX_CHUNK_SIZE).contains(&chunk_size),
            "chunk size out of range"
        );
        Chunker {
            chunk_size,
            buf: BytesMut::with_capacity(chunk_size),
        }
    }

    /// Adds bytes; returns the chunks they completed, in order.
    pub fn push(&mut self, mut data: &[u8]) -> Vec<Bytes> {
        let mut out = Vec::new();
        while !data.is_empty() {
            let room = self.chunk_size - self.buf.len();
            let take = room.min(data.len());
            self.buf.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.buf.len() == self.chunk_size {
                let full =
                    std::mem::replace(&mut self.buf, BytesMut::with_capacity(self.chunk_size));
                out.push(full.freeze());
            }
        }
        out
    }

    /// The final, possibly short, chunk; `None` if nothing is pending.
    pub fn finish(self) -> Option<Bytes> {
        if self.buf.is_empty() {
            None
        } else {
            Some(self.buf.freeze())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn chunks_reassemble_to_the_input(
            data in proptest::collection::vec(any::<u8>(), 0..5000),
            size in 1usize..700,
            cuts in proptest::collection::vec(0usize..5000, 0..8),
        ) {
            let mut c = Chunker::new(size);
            let mut out = Vec::new();
            let mut cuts = cuts;
            cuts.push(data.len());
            cuts.sort();
            let mut prev = 0;
            for cut in cuts {
                let cut = cut.min(data.len()).max(prev);
                out.extend(c.push(&data[prev..cut]));
                prev = cut;
            }
            out.extend(c.finish());
            for (i, ch) in out.iter().enumerate() {
                if i + 1 < out.len() { prop_assert_eq!(ch.len(), size); }
                prop_assert!(!ch.is_empty() && ch.len() <= size);
            }
            let joined: Vec<u8> = out.concat();
            prop_assert_eq!(joined, data);
        }
    }
}
