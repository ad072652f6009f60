//! Multi-process ranks: the environment that starts them (RANK, WORLD_SIZE, MASTER_ADDR,
//! MASTER_PORT, optional LOCAL_RANK — the names torchrun and mpirun wrappers use). The processes
//! find each other through [`super::TcpGroup`].

use crate::{Error, Result};

/// This process's place in a multi-process group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DistEnv {
    pub rank: usize,
    pub world: usize,
    /// GPU ordinal of this rank on its host (LOCAL_RANK, else RANK).
    pub local_rank: usize,
    pub master_addr: String,
    pub master_port: u16,
}

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

fn parse<T: std::str::FromStr>(name: &str, v: &str) -> Result<T> {
    v.trim()
        .parse()
        .map_err(|_| Error::Parallel(format!("environment variable {name}={v:?} is not a valid number")))
}

impl DistEnv {
    /// `None` unless WORLD_SIZE > 1; then every variable must be present and consistent.
    pub fn from_env() -> Result<Option<DistEnv>> {
        Self::from_vars(var)
    }

    pub fn from_vars(get: impl Fn(&str) -> Option<String>) -> Result<Option<DistEnv>> {
        let Some(w) = get("WORLD_SIZE") else { return Ok(None) };
        let world: usize = parse("WORLD_SIZE", &w)?;
        if world <= 1 {
            return Ok(None);
        }
        let need = |n: &str| {
            get(n).ok_or_else(|| {
                Error::Parallel(format!(
                    "WORLD_SIZE={world} starts a multi-process group, but {n} is not set"
                ))
            })
        };
        let rank: usize = parse("RANK", &need("RANK")?)?;
        if rank >= world {
            return Err(Error::Parallel(format!("RANK={rank} is out of range for WORLD_SIZE={world}")));
        }
        let local_rank = match get("LOCAL_RANK") {
            Some(v) => parse("LOCAL_RANK", &v)?,
            None => rank,
        };
        let master_addr = need("MASTER_ADDR")?;
        let master_port: u16 = parse("MASTER_PORT", &need("MASTER_PORT")?)?;
        Ok(Some(DistEnv { rank, world, local_rank, master_addr, master_port }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Result<Option<DistEnv>> {
        let m: std::collections::HashMap<String, String> =
            pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        DistEnv::from_vars(|n| m.get(n).cloned())
    }

    #[test]
    fn env_parsing() {
        assert_eq!(env(&[]).expect("empty"), None);
        assert_eq!(env(&[("WORLD_SIZE", "1")]).expect("one"), None);
        let d = env(&[("WORLD_SIZE", "2"), ("RANK", "1"), ("MASTER_ADDR", "h"), ("MASTER_PORT", "29500")])
            .expect("ok")
            .expect("some");
        assert_eq!((d.rank, d.world, d.local_rank, d.master_port), (1, 2, 1, 29500));
        let e = env(&[("WORLD_SIZE", "2"), ("RANK", "0"), ("MASTER_ADDR", "h")]).expect_err("no port");
        assert!(e.to_string().contains("MASTER_PORT"), "{e}");
        let e = env(&[("WORLD_SIZE", "2"), ("RANK", "2"), ("MASTER_ADDR", "h"), ("MASTER_PORT", "1")])
            .expect_err("rank out of range");
        assert!(e.to_string().contains("out of range"), "{e}");
        let e = env(&[("WORLD_SIZE", "two")]).expect_err("not a number");
        assert!(e.to_string().contains("WORLD_SIZE"), "{e}");
    }
}
