//! Speculative decoding in the runner: draft tokens from prompt lookup ([`ngram`]) or a draft
//! model ([`draft`]), and their verification ([`verify`]): one target forward over each
//! sequence's last token and its K drafts, K + 1 logit rows, each row chosen by the ordinary
//! sampler (argmax, or the seeded sampler at the token's own counter), the drafts accepted
//! while they equal what the target chose. The scheduler (`serve::spec`) decides how many
//! drafts each sequence gets and rolls back the rejected tokens' KV.

pub mod draft;
pub mod ngram;
pub mod verify;

pub use draft::{DraftChunk, DraftModel};
