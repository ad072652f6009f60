//! Prompt lookup (n-gram) drafting: the sequence's last `n` tokens are looked up in everything
//! before them (prompt and output), and the tokens that followed the latest earlier occurrence
//! are the draft. `n` goes from `max` down to `min`; the first `n` that matches wins.
//!
//! The draft length follows the match: a match of `n` tokens proposes at most `2n - 1` (1
//! after a one-token match, 7 after four). A longer matched context is likelier to go on the
//! same way, and every verified draft costs a row of the target's forward, so short matches
//! propose little. On the summaries of `data/summarize` this gave more tokens per step at a
//! lower verification cost than a fixed length (docs/perf-notes.md).

/// Most drafts proposed after a match of `n` tokens.
pub fn max_draft(n: usize) -> usize {
    2 * n - 1
}

/// Up to `k` (and [`max_draft`] of the match length) draft tokens for `tokens` (prompt + output
/// so far); empty when no suffix n-gram of `min..=max` tokens occurs earlier.
pub fn propose(tokens: &[u32], k: usize, min: usize, max: usize) -> Vec<u32> {
    let len = tokens.len();
    if k == 0 || min == 0 || len < 2 {
        return vec![];
    }
    for n in (min..=max.min(len - 1)).rev() {
        let pat = &tokens[len - n..];
        // Latest start `i` whose n-gram ends before the suffix's own last token.
        if let Some(i) = (0..len - n).rev().find(|&i| &tokens[i..i + n] == pat) {
            let from = i + n;
            return tokens[from..(from + k.min(max_draft(n))).min(len)].to_vec();
        }
    }
    vec![]
}

#[cfg(test)]
mod tests {
    use super::propose;

    #[test]
    fn longest_suffix_latest_occurrence() {
        // "1 2 3" occurs at 0 and 5; the suffix "2 3" (n = 2) matches the later one first.
        let t = [1, 2, 3, 4, 9, 1, 2, 3, 7, 8, 2, 3];
        assert_eq!(propose(&t, 2, 1, 3), vec![7, 8]);
        // n = 2 only: the draft is what follows "2 3" at 6..8, at most 2n - 1 = 3 tokens.
        assert_eq!(propose(&t, 10, 2, 2), vec![7, 8, 2]);
        // n = 3 ("1 2 3" at 0): at most 5 tokens, and never past the sequence's end.
        assert_eq!(propose(&[1, 2, 3, 4, 5, 6, 7, 8, 9, 1, 2, 3], 10, 3, 3), vec![4, 5, 6, 7, 8]);
        assert_eq!(propose(&[1, 2, 3, 4, 1, 2, 3], 10, 3, 3), vec![4, 1, 2, 3]);
        // A one-token match proposes one token.
        assert_eq!(propose(&[5, 6, 7, 5], 4, 1, 3), vec![6]);
        // k caps the draft; the draft never runs past the end of the sequence.
        assert_eq!(propose(&t, 1, 1, 3), vec![7]);
        // No earlier occurrence of any suffix n-gram >= min.
        assert_eq!(propose(&[5, 6, 7, 8], 3, 1, 3), Vec::<u32>::new());
        assert_eq!(propose(&[5, 6, 5, 6], 3, 3, 3), Vec::<u32>::new());
        // A repeated token: the match overlaps the suffix, one token is left after it.
        assert_eq!(propose(&[4, 4, 4], 3, 2, 2), vec![4]);
        assert_eq!(propose(&[4], 3, 1, 2), Vec::<u32>::new());
    }
}
