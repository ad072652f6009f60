use super::*;
use crate::dist::LocalComm;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").expect("free port").local_addr().expect("addr").port()
}

fn env(rank: usize, world: usize, port: u16) -> DistEnv {
    DistEnv { rank, world, local_rank: rank, master_addr: "127.0.0.1".into(), master_port: port }
}

/// `f` on every rank of a `world`-process group (threads here, joined over loopback TCP).
fn on_group<T: Send>(world: usize, f: impl Fn(Arc<TcpGroup>) -> T + Sync) -> Vec<T> {
    let port = free_port();
    std::thread::scope(|s| {
        let hs: Vec<_> = (0..world)
            .map(|r| {
                let f = &f;
                s.spawn(move || {
                    let g = TcpGroup::connect_within(&env(r, world, port), Duration::from_secs(20));
                    f(Arc::new(g.expect("group")))
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().expect("rank thread")).collect()
    })
}

fn values(rank: usize, n: usize) -> Vec<f32> {
    (0..n).map(|i| ((i * 7 + rank * 13) % 17) as f32 * 0.37 - 2.9 + rank as f32 * 1e-3).collect()
}

#[test]
fn collectives_match_the_in_process_group_bit_for_bit() {
    // 40 values (inline sends) and 20k values (a sender thread), 3 ranks
    for n in [40, 20_000] {
        let local = LocalComm::group(3);
        let want: Vec<Vec<f32>> = std::thread::scope(|s| {
            let hs: Vec<_> = local
                .iter()
                .map(|c| {
                    s.spawn(move || {
                        let t = Tensor::from_f32(values(c.rank(), n), &[4, n / 4]).expect("tensor");
                        let sum = c.all_reduce_tensor(t.clone()).expect("reduce").to_f32_vec().expect("f32");
                        let cols = c.all_gather_cols(&t).expect("gather").to_f32_vec().expect("f32");
                        [sum, cols].concat()
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().expect("local rank")).collect()
        });
        let got = on_group(3, |g| {
            let c = TcpComm::new(g.clone(), vec![0, 1, 2]).expect("comm");
            let t = Tensor::from_f32(values(g.rank(), n), &[4, n / 4]).expect("tensor");
            let sum = c.all_reduce_tensor(t.clone()).expect("reduce").to_f32_vec().expect("f32");
            let cols = c.all_gather_cols(&t).expect("gather").to_f32_vec().expect("f32");
            [sum, cols].concat()
        });
        assert_eq!(got, want, "{n} values");
    }
}

#[test]
fn disjoint_subgroups_and_point_to_point_tensors() {
    let out = on_group(4, |g| {
        // two tensor-parallel pairs {0, 1} and {2, 3} at once, then stage 0 -> stage 1 by tp rank
        let members = if g.rank() < 2 { vec![0, 1] } else { vec![2, 3] };
        let c = TcpComm::new(g.clone(), members).expect("comm");
        let x = Tensor::from_f32(vec![g.rank() as f32 + 0.5; 6], &[2, 3]).expect("tensor");
        let sum = c.all_reduce_tensor(x).expect("reduce").to_f32_vec().expect("f32")[0];
        let h =
            Tensor::from_f32(values(g.rank(), 6), &[3, 2]).expect("t").to_dtype(DType::BF16).expect("bf16");
        let got = match g.rank() {
            0 | 1 => {
                g.send_tensor(g.rank() + 2, &h).expect("send");
                None
            }
            r => Some(g.recv_tensor(r - 2, 3, 2).expect("recv")),
        };
        (sum, got)
    });
    assert_eq!([out[0].0, out[1].0, out[2].0, out[3].0], [2.0, 2.0, 6.0, 6.0]);
    for (r, (_, got)) in out.iter().enumerate().skip(2) {
        let got = got.as_ref().expect("received");
        assert_eq!(got.dtype(), DType::BF16);
        let sent =
            Tensor::from_f32(values(r - 2, 6), &[3, 2]).expect("t").to_dtype(DType::BF16).expect("bf16");
        assert_eq!(got.to_f32_vec().expect("f32"), sent.to_f32_vec().expect("f32"));
    }
}

#[test]
fn a_tensor_of_the_wrong_shape_is_an_error() {
    let out = on_group(2, |g| match g.rank() {
        0 => g.send_tensor(1, &Tensor::from_f32(vec![1.0; 8], &[4, 2]).expect("t")).map(|_| String::new()),
        _ => Ok(g.recv_tensor(0, 3, 2).expect_err("3 rows expected").to_string()),
    });
    let e = out[1].as_ref().expect("message");
    assert!(e.contains("[4, 2]") && e.contains("expected 3 rows"), "{e}");
}

#[test]
fn a_peer_that_exits_is_an_error_not_a_hang() {
    let out = on_group(2, |g| match g.rank() {
        0 => {
            drop(g); // this rank "exits": its streams close
            String::new()
        }
        _ => g.recv(0, &[4]).expect_err("peer gone").to_string(),
    });
    assert!(out[1].contains("rank 0") && out[1].contains("closed"), "{}", out[1]);
}

#[test]
fn a_mismatched_world_size_is_refused() {
    let port = free_port();
    std::thread::scope(|s| {
        let server = s.spawn(|| TcpGroup::connect_within(&env(0, 2, port), Duration::from_secs(20)).err());
        let e = TcpGroup::connect_within(&env(1, 3, port), Duration::from_secs(20)).err().expect("refused");
        assert!(e.to_string().contains("WORLD_SIZE=3"), "{e}");
        assert!(server.join().expect("server").is_some());
    });
}

#[test]
fn a_missing_rank_times_out_naming_it() {
    let port = free_port();
    let e = TcpGroup::connect_within(&env(0, 2, port), Duration::from_millis(300)).err().expect("timeout");
    assert!(e.to_string().contains("rank 1"), "{e}");
}
