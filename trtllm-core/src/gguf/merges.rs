//! Vocabulary helpers for rebuilding a tokenizer from GGUF metadata: GPT-2's byte <-> unicode
//! alphabet, and BPE merges recovered from a vocabulary that ships none (SentencePiece-style
//! GGUFs), in the order HF transformers' `generate_merges` gives them.

use std::cmp::Ordering;
use std::collections::HashMap;

/// GPT-2's reversible byte -> char map: printable Latin-1 bytes map to themselves, the other
/// 68 bytes to U+0100 and up, in byte order.
pub fn bytes_to_unicode() -> [char; 256] {
    let printable =
        |b: u32| (0x21..=0x7E).contains(&b) || (0xA1..=0xAC).contains(&b) || (0xAE..=0xFF).contains(&b);
    let mut map = ['\0'; 256];
    let mut n = 0;
    for b in 0..256u32 {
        let c = if printable(b) {
            b
        } else {
            n += 1;
            255 + n
        };
        map[b as usize] = char::from_u32(c).unwrap_or('\u{FFFD}');
    }
    map
}

/// Python's `str.isspace` for one char (Unicode White_Space plus U+001C..U+001F).
pub fn py_isspace(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// A vocabulary in file order with duplicates collapsed as a Python dict built by
/// `{token: index for index, token in enumerate(tokens)}` does: each token at its first
/// position, with its last index.
pub fn dedup_vocab(tokens: &[String]) -> Vec<(String, u32)> {
    let mut pos: HashMap<&str, usize> = HashMap::with_capacity(tokens.len());
    let mut out: Vec<(String, u32)> = Vec::with_capacity(tokens.len());
    for (i, t) in tokens.iter().enumerate() {
        match pos.get(t.as_str()) {
            Some(&p) => out[p].1 = i as u32,
            None => {
                pos.insert(t, out.len());
                out.push((t.clone(), i as u32));
            }
        }
    }
    out
}

/// Merges implied by `vocab`: every split of a token into two tokens of the vocabulary, ordered
/// by the merged token's score (`scores[i]` for `vocab[i]`; best first, i.e. descending), then
/// by the lengths (in chars) of the left and right piece (longer first); ties keep vocabulary
/// order, and the splits of one token are ordered by the ids of their pieces. With no scores
/// the token id is the score and the order is ascending. This is transformers'
/// `generate_merges`, a stable sort included.
pub fn generate_merges(vocab: &[(String, u32)], scores: Option<&[f64]>) -> Vec<(String, String)> {
    let ids: HashMap<&str, u32> = vocab.iter().map(|(t, i)| (t.as_str(), *i)).collect();
    // (left, right, score, len_left, len_right)
    let mut merges: Vec<(&str, &str, f64, usize, usize)> = Vec::new();
    for (k, (token, id)) in vocab.iter().enumerate() {
        let score = scores.map_or(*id as f64, |s| s[k]);
        let n_chars = token.chars().count();
        let start = merges.len();
        for (n_left, (at, _)) in token.char_indices().enumerate().skip(1) {
            let (l, r) = token.split_at(at);
            if ids.contains_key(l) && ids.contains_key(r) {
                merges.push((l, r, score, n_left, n_chars - n_left));
            }
        }
        merges[start..].sort_by_key(|m| (ids[m.0], ids[m.1]));
    }
    let key = |m: &(&str, &str, f64, usize, usize)| (m.2, m.3, m.4);
    let cmp = |a: &(f64, usize, usize), b: &(f64, usize, usize)| {
        a.0.partial_cmp(&b.0).unwrap_or(Ordering::Equal).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2))
    };
    if scores.is_some() {
        merges.sort_by(|a, b| cmp(&key(b), &key(a)));
    } else {
        merges.sort_by(|a, b| cmp(&key(a), &key(b)));
    }
    merges.into_iter().map(|m| (m.0.to_string(), m.1.to_string())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_alphabet() {
        let m = bytes_to_unicode();
        assert_eq!(m[b'a' as usize], 'a');
        assert_eq!(m[b' ' as usize], '\u{120}'); // Ġ
        assert_eq!(m[b'\n' as usize], '\u{10A}'); // Ċ
        assert_eq!(m[0], '\u{100}');
        assert_eq!(m[0xAD], '\u{143}');
        let mut all: Vec<char> = m.to_vec();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), 256);
    }

    #[test]
    fn merges_follow_scores_then_lengths() {
        let toks: Vec<String> =
            ["a", "b", "c", "ab", "bc", "abc", "ab"].iter().map(|s| s.to_string()).collect();
        let vocab = dedup_vocab(&toks);
        assert_eq!(vocab.len(), 6);
        assert_eq!(vocab[3], ("ab".to_string(), 6));
        let pos: Vec<f64> = vocab.iter().map(|(_, i)| -(*i as f64)).collect();
        let m = generate_merges(&vocab, Some(&pos));
        let s: Vec<String> = m.iter().map(|(l, r)| format!("{l} {r}")).collect();
        // bc (id 4) first; abc (id 5): both splits, "ab c" (longer left) first; ab (id 6) last.
        assert_eq!(s, ["b c", "ab c", "a bc", "a b"]);
        let m = generate_merges(&vocab, None);
        let s: Vec<String> = m.iter().map(|(l, r)| format!("{l} {r}")).collect();
        assert_eq!(s, ["b c", "a bc", "ab c", "a b"]);
    }

    #[test]
    fn python_whitespace() {
        assert!(py_isspace(' ') && py_isspace('\t') && py_isspace('\u{1f}') && py_isspace('\u{3000}'));
        assert!(!py_isspace('x') && !py_isspace('\u{2581}'));
    }
}
