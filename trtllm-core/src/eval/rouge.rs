//! ROUGE-1, ROUGE-2 and ROUGE-L (F1), as `trtllm summarize` reports them.
//!
//! Tokens are the maximal runs of alphanumeric characters of the lowercased text (no stemming,
//! no stop words), like `rouge_score`'s default tokenizer. ROUGE-N counts n-gram overlap with
//! clipped counts; ROUGE-L uses the longest common subsequence of the two token lists.
//! Precision is over the candidate, recall over the reference, F1 their harmonic mean (0 when
//! either is 0).

use std::collections::HashMap;

/// Lowercase alphanumeric words.
pub fn tokenize(text: &str) -> Vec<String> {
    text.to_lowercase()
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(String::from)
        .collect()
}

/// Precision, recall and F1 of one comparison, each in [0, 1].
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Score {
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
}

impl Score {
    fn new(hits: usize, cand: usize, reference: usize) -> Self {
        let precision = if cand == 0 { 0.0 } else { hits as f64 / cand as f64 };
        let recall = if reference == 0 { 0.0 } else { hits as f64 / reference as f64 };
        let f1 =
            if precision + recall == 0.0 { 0.0 } else { 2.0 * precision * recall / (precision + recall) };
        Score { precision, recall, f1 }
    }
}

fn ngrams(tokens: &[String], n: usize) -> HashMap<&[String], usize> {
    let mut m = HashMap::new();
    if n > 0 {
        for w in tokens.windows(n) {
            *m.entry(w).or_insert(0) += 1;
        }
    }
    m
}

/// ROUGE-N of token lists.
pub fn rouge_n_tokens(cand: &[String], reference: &[String], n: usize) -> Score {
    let (c, r) = (ngrams(cand, n), ngrams(reference, n));
    let hits = c.iter().map(|(g, &k)| k.min(r.get(g).copied().unwrap_or(0))).sum();
    Score::new(hits, c.values().sum(), r.values().sum())
}

/// Length of the longest common subsequence.
pub fn lcs_len(a: &[String], b: &[String]) -> usize {
    let mut prev = vec![0usize; b.len() + 1];
    let mut cur = vec![0usize; b.len() + 1];
    for x in a {
        for (j, y) in b.iter().enumerate() {
            cur[j + 1] = if x == y { prev[j] + 1 } else { cur[j].max(prev[j + 1]) };
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

/// ROUGE-L of token lists.
pub fn rouge_l_tokens(cand: &[String], reference: &[String]) -> Score {
    Score::new(lcs_len(cand, reference), cand.len(), reference.len())
}

/// ROUGE-1, ROUGE-2 and ROUGE-L of one candidate against one reference.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Rouge {
    pub rouge1: Score,
    pub rouge2: Score,
    pub rouge_l: Score,
}

pub fn rouge(candidate: &str, reference: &str) -> Rouge {
    let (c, r) = (tokenize(candidate), tokenize(reference));
    Rouge {
        rouge1: rouge_n_tokens(&c, &r, 1),
        rouge2: rouge_n_tokens(&c, &r, 2),
        rouge_l: rouge_l_tokens(&c, &r),
    }
}

/// Mean F1 over a corpus of (candidate, reference) pairs, in percent.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct CorpusRouge {
    pub rouge1: f64,
    pub rouge2: f64,
    pub rouge_l: f64,
    pub n: usize,
}

pub fn corpus_rouge<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> CorpusRouge {
    let mut acc = CorpusRouge::default();
    for (c, r) in pairs {
        let s = rouge(c, r);
        acc.rouge1 += s.rouge1.f1;
        acc.rouge2 += s.rouge2.f1;
        acc.rouge_l += s.rouge_l.f1;
        acc.n += 1;
    }
    let k = if acc.n == 0 { 0.0 } else { 100.0 / acc.n as f64 };
    CorpusRouge { rouge1: acc.rouge1 * k, rouge2: acc.rouge2 * k, rouge_l: acc.rouge_l * k, n: acc.n }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) {
        assert!((a - b).abs() < 1e-12, "{a} != {b}");
    }

    #[test]
    fn tokenizer() {
        assert_eq!(tokenize("Hello, World! It's 2024..."), ["hello", "world", "it", "s", "2024"]);
        assert_eq!(tokenize("  \n-- "), Vec::<String>::new());
        assert_eq!(tokenize("Éclair CAFÉ"), ["éclair", "café"]);
    }

    #[test]
    fn same_length() {
        // cand: the cat sat on the mat / ref: the cat is on the mat
        // unigrams: the x2, cat, on, mat = 5 of 6 each side; bigrams: the-cat, on-the, the-mat = 3
        // of 5; LCS: the cat on the mat = 5.
        let s = rouge("The cat sat on the mat.", "the cat is on the mat");
        close(s.rouge1.f1, 5.0 / 6.0);
        close(s.rouge2.precision, 0.6);
        close(s.rouge2.f1, 0.6);
        close(s.rouge_l.f1, 5.0 / 6.0);
    }

    #[test]
    fn different_lengths() {
        // cand a b c / ref a b c d e: R1 P=1 R=0.6 F=0.75; R2 P=1 R=0.5 F=2/3; LCS 3: F=0.75.
        let s = rouge("a b c", "a b c d e");
        close(s.rouge1.precision, 1.0);
        close(s.rouge1.recall, 0.6);
        close(s.rouge1.f1, 0.75);
        close(s.rouge2.f1, 2.0 / 3.0);
        close(s.rouge_l.f1, 0.75);
    }

    #[test]
    fn clipped_counts_and_gaps() {
        // "the" three times against one: 1 hit; P=1/3, R=1/2, F=0.4.
        let s = rouge("the the the", "the cat");
        close(s.rouge1.f1, 0.4);
        close(s.rouge2.f1, 0.0);
        // LCS skips gaps: a _ b _ c vs a b c -> 3; P=3/5, R=1, F=0.75. No bigram in common.
        let s = rouge("a x b y c", "a b c");
        close(s.rouge_l.f1, 0.75);
        close(s.rouge2.f1, 0.0);
        // LCS is order-sensitive: c b a vs a b c -> 1.
        assert_eq!(lcs_len(&tokenize("c b a"), &tokenize("a b c")), 1);
    }

    #[test]
    fn empty_and_identical() {
        assert_eq!(rouge("", "a b").rouge1, Score::default());
        assert_eq!(rouge("a b", "").rouge_l, Score::default());
        let s = rouge("One sentence, exactly.", "one sentence exactly");
        close(s.rouge1.f1, 1.0);
        close(s.rouge2.f1, 1.0);
        close(s.rouge_l.f1, 1.0);
    }

    #[test]
    fn corpus_mean() {
        let c = corpus_rouge([("a b c", "a b c"), ("the the the", "the cat")]);
        assert_eq!(c.n, 2);
        close(c.rouge1, 100.0 * (1.0 + 0.4) / 2.0);
        close(c.rouge2, 50.0);
        assert_eq!(corpus_rouge(std::iter::empty()).n, 0);
    }
}
