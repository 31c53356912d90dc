//! A tiny xorshift generator for masking keys and handshake nonces.
//!
//! Masks only have to be unpredictable to a browser-side attacker (RFC 6455 §10.3), which a
//! load generator does not face; what matters here is that a fresh mask costs a few instructions.

/// xorshift64* state. Never zero.
#[derive(Debug, Clone)]
pub struct XorShift(u64);

impl XorShift {
    /// Seeds from `seed` mixed with the clock, so that two runs do not share masks.
    pub fn new(seed: u64) -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        let mut state = (seed ^ nanos).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        // Discard the first outputs, which stay close to the seed.
        for _ in 0..4 {
            state = step(state);
        }
        Self(state)
    }

    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = step(self.0);
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A fresh 4-byte masking key.
    pub fn mask(&mut self) -> [u8; 4] {
        (self.next_u64() as u32).to_ne_bytes()
    }

    /// 16 random bytes (a handshake nonce).
    pub fn bytes16(&mut self) -> [u8; 16] {
        let mut out = [0u8; 16];
        out[..8].copy_from_slice(&self.next_u64().to_ne_bytes());
        out[8..].copy_from_slice(&self.next_u64().to_ne_bytes());
        out
    }
}

fn step(mut x: u64) -> u64 {
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    x
}
