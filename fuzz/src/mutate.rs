//! The mutations: byte-level for every input, tree-level for JSON.

use serde_json::{json, Map, Value};

/// xorshift64*: small, fast, deterministic.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.max(1))
    }
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545F4914F6CDD1D)
    }
    /// Uniform in `0..n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }
    pub fn chance(&mut self, one_in: usize) -> bool {
        self.below(one_in) == 0
    }
    pub fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[self.below(xs.len())]
    }
}

/// Boundary integers, as little-endian u64 / u32 patterns.
const INTERESTING_U64: &[u64] = &[
    0,
    1,
    2,
    7,
    8,
    0x7f,
    0x80,
    0xff,
    0x100,
    0x7fff,
    0xffff,
    0x1_0000,
    0x7fff_ffff,
    0x8000_0000,
    0xffff_ffff,
    0x1_0000_0000,
    1_000_000_000,
    1 << 40,
    0x7fff_ffff_ffff_ffff,
    0x8000_0000_0000_0000,
    u64::MAX,
    u64::MAX - 7,
];

/// Boundary JSON numbers and odd values a field may get.
fn interesting_json(rng: &mut Rng) -> Value {
    let v = [
        json!(0),
        json!(-1),
        json!(1),
        json!(2),
        json!(-0.0),
        json!(0.5),
        json!(1e-320),
        json!(1e308),
        json!(-1e308),
        json!(4294967296u64),
        json!(1_000_000_000),
        json!(1_000_000_000_000u64),
        json!(9223372036854775807i64),
        json!(18446744073709551615u64),
        json!(-9223372036854775807i64),
        json!(""),
        json!("NaN"),
        json!("inf"),
        json!("\u{0}"),
        json!("a".repeat(300)),
        json!(null),
        json!(true),
        json!([]),
        json!({}),
        json!([0]),
        json!([[1, 2], [3]]),
        json!({"type": "default"}),
        json!({"rope_type": "yarn", "factor": -1.0}),
        json!({"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 1.0}),
        json!({"rope_type": "linear", "factor": 0.0}),
        json!({"role": "user", "content": [{"type": "text", "text": "x"}]}),
    ];
    v[rng.below(v.len())].clone()
}

/// Mutates inputs drawn from a pool.
pub struct Mutator {
    json: bool,
    /// Keys seen in the seeds (JSON targets): added to objects.
    keys: Vec<String>,
}

impl Mutator {
    pub fn new(seeds: &[Vec<u8>], json: bool) -> Self {
        let mut keys = vec![];
        if json {
            for s in seeds {
                if let Ok(v) = serde_json::from_slice::<Value>(s) {
                    collect_keys(&v, &mut keys);
                }
            }
            keys.sort();
            keys.dedup();
        }
        Mutator { json, keys }
    }

    /// A new input from `pool` (non-empty): one to four stacked mutations.
    pub fn mutate(&self, rng: &mut Rng, pool: &[Vec<u8>]) -> Vec<u8> {
        let mut x = if pool.is_empty() { vec![] } else { rng.pick(pool).clone() };
        for _ in 0..1 + rng.below(4) {
            if self.json && rng.below(3) > 0 {
                if let Ok(mut v) = serde_json::from_slice::<Value>(&x) {
                    self.mutate_tree(rng, &mut v, 0);
                    x = serde_json::to_vec(&v).unwrap_or(x);
                    continue;
                }
            }
            bytes(rng, &mut x, pool);
        }
        x
    }

    fn mutate_tree(&self, rng: &mut Rng, v: &mut Value, depth: usize) {
        // Walk down to a random node, then change it.
        let go_down = depth < 8 && rng.below(3) > 0;
        match v {
            Value::Object(m) if go_down && !m.is_empty() => {
                let k = m.keys().nth(rng.below(m.len())).cloned().unwrap_or_default();
                if let Some(child) = m.get_mut(&k) {
                    return self.mutate_tree(rng, child, depth + 1);
                }
            }
            Value::Array(a) if go_down && !a.is_empty() => {
                let i = rng.below(a.len());
                return self.mutate_tree(rng, &mut a[i], depth + 1);
            }
            _ => {}
        }
        match (rng.below(6), &mut *v) {
            (0, Value::Object(m)) if !m.is_empty() => {
                let k = m.keys().nth(rng.below(m.len())).cloned().unwrap_or_default();
                m.remove(&k);
            }
            (1, Value::Object(m)) if !self.keys.is_empty() => {
                m.insert(rng.pick(&self.keys).clone(), interesting_json(rng));
            }
            (2, Value::Array(a)) if !a.is_empty() => {
                let i = rng.below(a.len());
                let dup = a[i].clone();
                for _ in 0..1 + rng.below(64) {
                    a.push(dup.clone());
                }
            }
            (3, _) => {
                // Deep nesting around the node.
                let mut w = std::mem::take(v);
                for _ in 0..rng.below(200) {
                    w = if rng.chance(2) {
                        Value::Array(vec![w])
                    } else {
                        Value::Object(Map::from_iter([("x".into(), w)]))
                    };
                }
                *v = w;
            }
            (4, Value::Number(n)) => {
                let f = n.as_f64().unwrap_or(0.0);
                *v = json!(match rng.below(4) {
                    0 => -f,
                    1 => f * 1e6,
                    2 => f / 1e6,
                    _ => f + 1.0,
                });
            }
            _ => *v = interesting_json(rng),
        }
    }
}

fn collect_keys(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                out.push(k.clone());
                collect_keys(x, out);
            }
        }
        Value::Array(a) => a.iter().for_each(|x| collect_keys(x, out)),
        _ => {}
    }
}

/// Byte-level edits.
fn bytes(rng: &mut Rng, x: &mut Vec<u8>, pool: &[Vec<u8>]) {
    let n = x.len();
    match rng.below(9) {
        0 if n > 0 => {
            let i = rng.below(n);
            x[i] ^= 1 << rng.below(8);
        }
        1 if n > 0 => {
            let i = rng.below(n);
            x[i] = *rng.pick(&[0u8, 0xff, 0x7f, 0x80, b'0', b'9', b'"', b'{', b'[', b'-']);
        }
        2 if n >= 8 => {
            // An integer field overwritten with a boundary value (4 or 8 bytes, little-endian).
            let v = *rng.pick(INTERESTING_U64);
            let w = if rng.chance(2) { 4 } else { 8 };
            let i = rng.below(n - w + 1);
            x[i..i + w].copy_from_slice(&v.to_le_bytes()[..w]);
        }
        3 if n > 0 => {
            let i = rng.below(n);
            let len = 1 + rng.below((n - i).min(64));
            x.drain(i..i + len);
        }
        4 if n > 0 => {
            // A chunk duplicated in place.
            let i = rng.below(n);
            let len = 1 + rng.below((n - i).min(256));
            let chunk = x[i..i + len].to_vec();
            let at = rng.below(n + 1);
            x.splice(at..at, chunk);
        }
        5 if n > 0 => x.truncate(rng.below(n)),
        6 if !pool.is_empty() => {
            // A splice: the head of this input, the tail of another.
            let other = rng.pick(pool);
            let (a, b) = (rng.below(n + 1), rng.below(other.len() + 1));
            x.truncate(a);
            x.extend_from_slice(&other[b..]);
        }
        7 => {
            let at = rng.below(n + 1);
            let k = 1 + rng.below(16);
            let ins: Vec<u8> = (0..k).map(|_| rng.next_u64() as u8).collect();
            x.splice(at..at, ins);
        }
        _ if n > 0 => {
            // A decimal number in text replaced by a boundary one.
            let i = rng.below(n);
            if let Some(start) = x[i..].iter().position(u8::is_ascii_digit).map(|p| p + i) {
                let end = x[start..].iter().position(|b| !b.is_ascii_digit()).map_or(n, |p| p + start);
                let v = rng.pick(INTERESTING_U64).to_string();
                x.splice(start..end, v.into_bytes());
            }
        }
        _ => x.push(rng.next_u64() as u8),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mutations_are_deterministic_and_change_the_input() {
        let seeds = vec![br#"{"a": 1, "b": [1, 2, 3], "c": {"d": "x"}}"#.to_vec()];
        let m = Mutator::new(&seeds, true);
        let run = |seed| {
            let mut rng = Rng::new(seed);
            (0..200).map(|_| m.mutate(&mut rng, &seeds)).collect::<Vec<_>>()
        };
        let a = run(7);
        assert_eq!(a, run(7));
        assert!(a.iter().filter(|x| **x != seeds[0]).count() > 150);
        assert!(
            a.iter().any(|x| serde_json::from_slice::<Value>(x).is_err()),
            "some byte edits break the JSON"
        );
        assert!(a.iter().any(|x| serde_json::from_slice::<Value>(x).is_ok()), "tree edits keep it JSON");
    }
}
