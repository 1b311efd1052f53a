//! SHA-256 helpers.

use sha2::{Digest, Sha256};

/// The SHA-256 of `data`.
pub fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

/// An incremental SHA-256 that finishes as lowercase hex.
#[derive(Default, Clone)]
pub struct Sha256Hex(Sha256);

impl Sha256Hex {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn update(&mut self, data: &[u8]) {
        self.0.update(data);
    }

    pub fn finish(self) -> String {
        let out: [u8; 32] = self.0.finalize().into();
        hex::encode(out)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn matches_known_vector() {
        let mut h = super::Sha256Hex::new();
        h.update(b"ab");
        h.update(b"c");
        assert_eq!(
            h.finish(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
