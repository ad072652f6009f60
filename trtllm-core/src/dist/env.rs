//! Multi-process ranks: the environment that starts them (RANK, WORLD_SIZE, MASTER_ADDR,
//! MASTER_PORT, optional LOCAL_RANK — the names torchrun and mpirun wrappers use) and the TCP
//! rendezvous that hands rank 0's NCCL unique id to every other rank.
//!
//! Protocol (one connection per non-zero rank, to rank 0 at MASTER_ADDR:MASTER_PORT):
//! the peer sends `b"TRTLLM-RDV1"` + its rank (u32 LE) + the world size (u32 LE); rank 0 answers
//! `b"OK"` + the 128-byte id, or `b"NO"` + a u32 length + a UTF-8 reason, and closes.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use trtllm_kernels::nccl::NcclId;

use crate::ops::cuda::dev_err;
use crate::{Error, Result};

const MAGIC: &[u8; 11] = b"TRTLLM-RDV1";

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
        .map_err(|_| Error::Msg(format!("environment variable {name}={v:?} is not a valid number")))
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
                Error::Msg(format!("WORLD_SIZE={world} starts a multi-process group, but {n} is not set"))
            })
        };
        let rank: usize = parse("RANK", &need("RANK")?)?;
        if rank >= world {
            return Err(Error::Msg(format!("RANK={rank} is out of range for WORLD_SIZE={world}")));
        }
        let local_rank = match get("LOCAL_RANK") {
            Some(v) => parse("LOCAL_RANK", &v)?,
            None => rank,
        };
        let master_addr = need("MASTER_ADDR")?;
        let master_port: u16 = parse("MASTER_PORT", &need("MASTER_PORT")?)?;
        Ok(Some(DistEnv { rank, world, local_rank, master_addr, master_port }))
    }

    fn timeout() -> Duration {
        Duration::from_secs(crate::env::knobs().rendezvous_timeout_s)
    }

    /// The group's NCCL id: rank 0 makes it and serves it; the others fetch it.
    pub fn rendezvous(&self) -> Result<NcclId> {
        let deadline = Instant::now() + Self::timeout();
        if self.rank == 0 {
            let id = NcclId::new().map_err(dev_err)?;
            serve_id(self, &id, deadline)?;
            Ok(id)
        } else {
            fetch_id(self, deadline)
        }
    }
}

fn io_err(what: &str, e: std::io::Error) -> Error {
    Error::Msg(format!("rendezvous: {what}: {e}"))
}

fn serve_id(env: &DistEnv, id: &NcclId, deadline: Instant) -> Result<()> {
    let addr = format!("0.0.0.0:{}", env.master_port);
    let listener = TcpListener::bind(&addr).map_err(|e| io_err(&format!("rank 0 listening on {addr}"), e))?;
    listener.set_nonblocking(true).map_err(|e| io_err("listener", e))?;
    let mut joined = vec![false; env.world];
    joined[0] = true;
    while joined.iter().any(|j| !j) {
        if Instant::now() > deadline {
            let missing: Vec<usize> = (0..env.world).filter(|&r| !joined[r]).collect();
            return Err(Error::Msg(format!(
                "rendezvous: ranks {missing:?} did not connect to port {} in time (TRTLLM_RENDEZVOUS_TIMEOUT)",
                env.master_port
            )));
        }
        let mut s = match listener.accept() {
            Ok((s, _)) => s,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(20));
                continue;
            }
            Err(e) => return Err(io_err("accept", e)),
        };
        s.set_nonblocking(false).map_err(|e| io_err("peer socket", e))?;
        s.set_read_timeout(Some(Duration::from_secs(30))).map_err(|e| io_err("peer socket", e))?;
        let mut hello = [0u8; 19];
        if s.read_exact(&mut hello).is_err() || &hello[..11] != MAGIC {
            continue; // not one of ours (a port scan, a stale client): ignore it
        }
        let rank = u32::from_le_bytes([hello[11], hello[12], hello[13], hello[14]]) as usize;
        let world = u32::from_le_bytes([hello[15], hello[16], hello[17], hello[18]]) as usize;
        let refuse = if world != env.world {
            Some(format!("rank {rank} has WORLD_SIZE={world}, rank 0 has {}", env.world))
        } else if rank == 0 || rank >= env.world {
            Some(format!("rank {rank} is not a valid peer rank for WORLD_SIZE={world}"))
        } else if joined[rank] {
            Some(format!("rank {rank} joined twice"))
        } else {
            None
        };
        match refuse {
            None => {
                let mut msg = b"OK".to_vec();
                msg.extend_from_slice(&id.0);
                s.write_all(&msg).map_err(|e| io_err(&format!("sending the id to rank {rank}"), e))?;
                joined[rank] = true;
            }
            Some(why) => {
                let mut msg = b"NO".to_vec();
                msg.extend_from_slice(&(why.len() as u32).to_le_bytes());
                msg.extend_from_slice(why.as_bytes());
                let _ = s.write_all(&msg);
                return Err(Error::Msg(format!("rendezvous: {why}")));
            }
        }
    }
    Ok(())
}

fn fetch_id(env: &DistEnv, deadline: Instant) -> Result<NcclId> {
    let target = format!("{}:{}", env.master_addr, env.master_port);
    let mut s = loop {
        match TcpStream::connect(&target) {
            Ok(s) => break s,
            Err(e) if Instant::now() > deadline => {
                return Err(io_err(&format!("rank {} could not reach rank 0 at {target}", env.rank), e))
            }
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    };
    let mut hello = MAGIC.to_vec();
    hello.extend_from_slice(&(env.rank as u32).to_le_bytes());
    hello.extend_from_slice(&(env.world as u32).to_le_bytes());
    s.write_all(&hello).map_err(|e| io_err("sending hello", e))?;
    let left = deadline.saturating_duration_since(Instant::now()).max(Duration::from_secs(1));
    s.set_read_timeout(Some(left)).map_err(|e| io_err("socket", e))?;
    let mut head = [0u8; 2];
    s.read_exact(&mut head).map_err(|e| io_err("reading rank 0's answer", e))?;
    if &head == b"OK" {
        let mut id = [0u8; 128];
        s.read_exact(&mut id).map_err(|e| io_err("reading the NCCL id", e))?;
        return Ok(NcclId(id));
    }
    let mut len = [0u8; 4];
    s.read_exact(&mut len).map_err(|e| io_err("reading rank 0's refusal", e))?;
    let mut why = vec![0u8; (u32::from_le_bytes(len) as usize).min(4096)];
    s.read_exact(&mut why).map_err(|e| io_err("reading rank 0's refusal", e))?;
    Err(Error::Msg(format!("rendezvous refused by rank 0: {}", String::from_utf8_lossy(&why))))
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

    /// The TCP exchange itself, with a fixed id (no NCCL needed): ranks 1..3 get rank 0's bytes.
    #[test]
    fn rendezvous_hands_out_the_id() {
        let port = {
            let l = TcpListener::bind("127.0.0.1:0").expect("free port");
            l.local_addr().expect("addr").port()
        };
        let mk = |rank| DistEnv {
            rank,
            world: 4,
            local_rank: rank,
            master_addr: "127.0.0.1".into(),
            master_port: port,
        };
        let id = NcclId([7u8; 128]);
        let deadline = Instant::now() + Duration::from_secs(20);
        std::thread::scope(|s| {
            let server = s.spawn(|| serve_id(&mk(0), &id, deadline));
            let peers: Vec<_> = (1..4).map(|r| s.spawn(move || fetch_id(&mk(r), deadline))).collect();
            for p in peers {
                assert_eq!(p.join().expect("peer").expect("fetched").0, [7u8; 128]);
            }
            server.join().expect("server").expect("served");
        });
    }

    #[test]
    fn rendezvous_refuses_a_mismatched_world() {
        let port = {
            let l = TcpListener::bind("127.0.0.1:0").expect("free port");
            l.local_addr().expect("addr").port()
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        let r0 =
            DistEnv { rank: 0, world: 2, local_rank: 0, master_addr: "127.0.0.1".into(), master_port: port };
        let mut r1 = r0.clone();
        r1.rank = 1;
        r1.world = 3;
        std::thread::scope(|s| {
            let server = s.spawn(|| serve_id(&r0, &NcclId([1; 128]), deadline));
            let e = fetch_id(&r1, deadline).expect_err("refused");
            assert!(e.to_string().contains("WORLD_SIZE=3"), "{e}");
            assert!(server.join().expect("server").is_err());
        });
    }
}
