//! Incremental detokenization and stop strings for streaming.
//!
//! [`IncrementalDetokenizer`] decodes only a short window of ids per token (the vLLM
//! prefix/read-offset method): the text of `ids[prefix..]` minus that of `ids[prefix..read]` is
//! the new text, emitted once it is complete UTF-8. Decoding from a few tokens back keeps
//! tokenizer-specific spacing (SentencePiece's leading "▁") right; cost per token is O(window),
//! not O(length).
//!
//! [`StopMatcher`] holds back text that could be the start of a stop string, and cuts the
//! output before the first stop string found.

use crate::text::Tokenizer;
use crate::Result;

pub struct IncrementalDetokenizer {
    ids: Vec<u32>,
    prefix: usize,
    read: usize,
}

impl IncrementalDetokenizer {
    /// Seeded with the last few prompt ids so that the first generated token decodes in context.
    pub fn new(prompt: &[u32]) -> Self {
        let tail = &prompt[prompt.len().saturating_sub(5)..];
        IncrementalDetokenizer { ids: tail.to_vec(), prefix: 0, read: tail.len() }
    }

    /// Add one id; returns the newly completed text (possibly empty).
    pub fn push(&mut self, tok: &Tokenizer, id: u32) -> Result<String> {
        self.ids.push(id);
        self.next(tok, false)
    }

    /// The text still held back as incomplete UTF-8 (at the end of the output), with its
    /// replacement characters, as a full decode would show it.
    pub fn flush(&mut self, tok: &Tokenizer) -> Result<String> {
        self.next(tok, true)
    }

    fn next(&mut self, tok: &Tokenizer, last: bool) -> Result<String> {
        let before = tok.decode(&self.ids[self.prefix..self.read], true)?;
        let after = tok.decode(&self.ids[self.prefix..], true)?;
        if (after.ends_with('\u{FFFD}') && !last) || after.len() <= before.len() {
            return Ok(String::new());
        }
        let Some(piece) = after.get(before.len()..) else {
            return Ok(String::new());
        };
        let piece = piece.to_string();
        self.prefix = self.read;
        self.read = self.ids.len();
        Ok(piece)
    }
}

/// Text accumulation with stop strings.
pub struct StopMatcher {
    stops: Vec<String>,
    /// All text so far (up to a stop string, once found).
    text: String,
    /// Bytes of `text` already handed out.
    emitted: usize,
    stopped: bool,
}

impl StopMatcher {
    pub fn new(stops: Vec<String>) -> Self {
        StopMatcher { stops, text: String::new(), emitted: 0, stopped: false }
    }

    pub fn stopped(&self) -> bool {
        self.stopped
    }

    /// Add new text; returns what can be emitted now and whether a stop string ended the output.
    pub fn push(&mut self, piece: &str) -> (String, bool) {
        if self.stopped {
            return (String::new(), true);
        }
        let search_from = self.emitted;
        self.text.push_str(piece);
        let longest = self.stops.iter().map(|s| s.len()).max().unwrap_or(0);
        // A stop string may begin in the held-back tail; only search the part that can hold one.
        let first_hit = self
            .stops
            .iter()
            .filter_map(|s| {
                let mut from = search_from.saturating_sub(longest);
                while !self.text.is_char_boundary(from) {
                    from -= 1;
                }
                self.text[from..].find(s.as_str()).map(|i| from + i)
            })
            .min();
        if let Some(cut) = first_hit {
            self.text.truncate(cut.max(self.emitted));
            self.stopped = true;
            return (self.take(self.text.len()), true);
        }
        // Hold back the longest suffix that is a proper prefix of a stop string.
        let mut hold = 0;
        for s in &self.stops {
            for k in (1..s.len()).rev() {
                if k <= hold || !s.is_char_boundary(k) {
                    continue;
                }
                if self.text.ends_with(&s[..k]) {
                    hold = k;
                    break;
                }
            }
        }
        let end = (self.text.len() - hold).max(self.emitted);
        (self.take(end), false)
    }

    /// Whatever is held back (the output ended without completing a stop string).
    pub fn flush(&mut self) -> String {
        self.take(self.text.len())
    }

    fn take(&mut self, end: usize) -> String {
        let out = self.text.get(self.emitted..end).unwrap_or_default().to_string();
        self.emitted = end.max(self.emitted);
        out
    }

    /// The whole output text.
    pub fn text(&self) -> &str {
        &self.text
    }
}

#[cfg(test)]
mod tests {
    use crate::text::StopMatcher;

    #[test]
    fn stop_strings_hold_back_and_cut() {
        let mut m = StopMatcher::new(vec!["END".into(), "\n\n".into()]);
        assert_eq!(m.push("hello E"), ("hello ".into(), false));
        assert_eq!(m.push("N"), ("".into(), false));
        assert_eq!(m.push("vy"), ("ENvy".into(), false));
        assert_eq!(m.push(" x\n"), (" x".into(), false));
        assert_eq!(m.push("\nmore"), ("".into(), true));
        assert_eq!(m.text(), "hello ENvy x");
        let mut m = StopMatcher::new(vec!["ab".into()]);
        assert_eq!(m.push("xa"), ("x".into(), false));
        assert_eq!(m.flush(), "a");
        let mut m = StopMatcher::new(vec![]);
        assert_eq!(m.push("é"), ("é".into(), false));
    }
}
