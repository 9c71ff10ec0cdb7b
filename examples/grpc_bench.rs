//! gRPC load for `benches/grpc.sh`: a server, and a client that measures messages per second.
//!
//!   grpc_bench server PORT
//!   grpc_bench unary  ADDR AUTHORITY SECONDS CONCURRENCY BYTES
//!   grpc_bench stream ADDR AUTHORITY SECONDS CONCURRENCY BYTES
//!
//! `unary`: CONCURRENCY callers each sending unary calls back to back (one h2 connection).
//! `stream`: CONCURRENCY bidi streams, each a ping-pong (a message waits for the previous echo).
//! Prints `<messages per second> <errors>`.

#[path = "../tests/support/grpc_echo.rs"]
mod grpc_echo;

use std::time::{Duration, Instant};

use bytes::Bytes;
use grpc_echo::Raw;
use http::uri::PathAndQuery;
use tonic::transport::{Channel, Endpoint};
use tonic::Request;

type Client = tonic::client::Grpc<Channel>;

fn arg(args: &[String], i: usize) -> &str {
    args.get(i).map(String::as_str).unwrap_or_else(|| {
        eprintln!("usage: grpc_bench server PORT | (unary|stream) ADDR AUTHORITY SECONDS CONCURRENCY BYTES");
        std::process::exit(2)
    })
}

fn num(args: &[String], i: usize) -> u64 {
    arg(args, i).parse().unwrap_or_else(|_| {
        eprintln!("argument {i} is not a number");
        std::process::exit(2)
    })
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let mode = arg(&args, 1).to_string();
    if mode == "server" {
        let port = num(&args, 2);
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port as u16))
            .await
            .unwrap_or_else(|e| {
                eprintln!("bind: {e}");
                std::process::exit(1)
            });
        grpc_echo::serve(listener).await;
        return;
    }
    let (addr, authority) = (arg(&args, 2).to_string(), arg(&args, 3).to_string());
    let seconds = Duration::from_secs(num(&args, 4));
    let (concurrency, bytes) = (num(&args, 5), num(&args, 6) as usize);
    let channel = match Endpoint::from_shared(format!("http://{addr}"))
        .map(|e| e.origin(format!("http://{authority}").parse().unwrap_or_default()))
    {
        Ok(e) => e.connect_lazy(),
        Err(e) => {
            eprintln!("endpoint: {e}");
            std::process::exit(2)
        }
    };
    let msg = Bytes::from(vec![b'x'; bytes]);
    let end = Instant::now() + seconds;
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let c = tonic::client::Grpc::new(channel.clone());
            let msg = msg.clone();
            let streaming = mode == "stream";
            tokio::spawn(async move {
                if streaming {
                    stream(c, msg, end).await
                } else {
                    unary(c, msg, end).await
                }
            })
        })
        .collect();
    let (mut ok, mut errors) = (0u64, 0u64);
    for w in workers {
        if let Ok((o, e)) = w.await {
            ok += o;
            errors += e;
        }
    }
    println!("{:.0} {errors}", ok as f64 / seconds.as_secs_f64());
}

async fn unary(mut c: Client, msg: Bytes, end: Instant) -> (u64, u64) {
    let (mut ok, mut errors) = (0, 0);
    while Instant::now() < end {
        if c.ready().await.is_err() {
            errors += 1;
            continue;
        }
        let path = PathAndQuery::from_static("/t.Echo/Unary");
        match c
            .unary::<_, Bytes, _>(Request::new(msg.clone()), path, Raw)
            .await
        {
            Ok(_) => ok += 1,
            Err(_) => errors += 1,
        }
    }
    (ok, errors)
}

async fn stream(mut c: Client, msg: Bytes, end: Instant) -> (u64, u64) {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Bytes>(1);
    let out = futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx));
    if c.ready().await.is_err() || tx.send(msg.clone()).await.is_err() {
        return (0, 1);
    }
    let path = PathAndQuery::from_static("/t.Echo/Bidi");
    let mut echoes = match c
        .streaming::<_, Bytes, Bytes, _>(Request::new(out), path, Raw)
        .await
    {
        Ok(r) => r.into_inner(),
        Err(_) => return (0, 1),
    };
    let mut ok = 0;
    while let Ok(Some(_)) = echoes.message().await {
        ok += 1;
        if Instant::now() >= end || tx.send(msg.clone()).await.is_err() {
            break;
        }
    }
    (ok, 0)
}
