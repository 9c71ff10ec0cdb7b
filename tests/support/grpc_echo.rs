//! A gRPC echo service for tests and benchmarks: tonic's server machinery with raw-bytes
//! messages (no code generation), served by hyper over h2c. Methods of `t.Echo`: `Unary` (the
//! message back), `Fail` (INVALID_ARGUMENT), `Sum` (client streaming: "<messages> <bytes>"),
//! `Bidi` (every message echoed as it arrives), `Count` (the request is N: N messages back).
//! Included by `tests/grpc.rs` and `examples/grpc_bench.rs` with `#[path]`.
#![allow(dead_code)]

use std::future::{ready, Ready};
use std::pin::Pin;

use bytes::{Buf, BufMut, Bytes};
use futures_util::{Stream, StreamExt};
use tokio::net::TcpListener;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::server::{ClientStreamingService, StreamingService, UnaryService};
use tonic::{Request, Response, Status, Streaming};

/// Messages are the raw bytes.
#[derive(Clone, Copy, Default)]
pub struct Raw;

impl Codec for Raw {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = Raw;
    type Decoder = Raw;
    fn encoder(&mut self) -> Raw {
        Raw
    }
    fn decoder(&mut self) -> Raw {
        Raw
    }
}

impl Encoder for Raw {
    type Item = Bytes;
    type Error = Status;
    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put(item);
        Ok(())
    }
}

impl Decoder for Raw {
    type Item = Bytes;
    type Error = Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}

type BoxStream = Pin<Box<dyn Stream<Item = Result<Bytes, Status>> + Send>>;
type BoxFuture<T> = Pin<Box<dyn std::future::Future<Output = T> + Send>>;

/// `/t.Echo/Unary`: the message back. `/t.Echo/Fail`: INVALID_ARGUMENT with a message.
struct Unary {
    fail: bool,
}

impl UnaryService<Bytes> for Unary {
    type Response = Bytes;
    type Future = Ready<Result<Response<Bytes>, Status>>;
    fn call(&mut self, req: Request<Bytes>) -> Self::Future {
        ready(if self.fail {
            Err(Status::invalid_argument("bad request: nope"))
        } else {
            Ok(Response::new(req.into_inner()))
        })
    }
}

/// `/t.Echo/Sum`: client streaming; answers "<messages> <bytes>".
struct Sum;

impl ClientStreamingService<Bytes> for Sum {
    type Response = Bytes;
    type Future = BoxFuture<Result<Response<Bytes>, Status>>;
    fn call(&mut self, req: Request<Streaming<Bytes>>) -> Self::Future {
        Box::pin(async move {
            let mut stream = req.into_inner();
            let (mut n, mut len) = (0usize, 0usize);
            while let Some(m) = stream.message().await? {
                n += 1;
                len += m.len();
            }
            Ok(Response::new(Bytes::from(format!("{n} {len}"))))
        })
    }
}

/// `/t.Echo/Bidi`: every message echoed as it arrives. `/t.Echo/Count`: server streaming,
/// the request is a count N; N messages "0".."N-1" (as a bidi handler over one message).
struct Bidi {
    count: bool,
}

impl StreamingService<Bytes> for Bidi {
    type Response = Bytes;
    type ResponseStream = BoxStream;
    type Future = Ready<Result<Response<BoxStream>, Status>>;
    fn call(&mut self, req: Request<Streaming<Bytes>>) -> Self::Future {
        let incoming = req.into_inner();
        let out: BoxStream = if self.count {
            Box::pin(
                incoming
                    .take(1)
                    .map(|m| {
                        let n: usize = std::str::from_utf8(&m?)
                            .ok()
                            .and_then(|s| s.parse().ok())
                            .ok_or_else(|| Status::invalid_argument("count"))?;
                        Ok::<_, Status>(futures_util::stream::iter(
                            (0..n).map(|i| Ok(Bytes::from(i.to_string()))),
                        ))
                    })
                    .flat_map(|r| match r {
                        Ok(s) => s.left_stream(),
                        Err(e) => futures_util::stream::once(ready(Err(e))).right_stream(),
                    }),
            )
        } else {
            Box::pin(incoming)
        };
        ready(Ok(Response::new(out)))
    }
}

pub fn server_grpc() -> tonic::server::Grpc<Raw> {
    tonic::server::Grpc::new(Raw)
        .max_decoding_message_size(usize::MAX)
        .max_encoding_message_size(usize::MAX)
}

/// Serve the `t.Echo` methods over h2c on `listener` (hyper serves tonic's handlers).
pub async fn serve(listener: TcpListener) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        // small messages answered at once, not after a delayed ACK
        let _ = stream.set_nodelay(true);
        tokio::spawn(serve_connection(stream));
    }
}

/// Serve the `t.Echo` methods over h2 on one connection (plain or TLS).
pub async fn serve_connection<IO>(stream: IO)
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service =
        hyper::service::service_fn(|req: hyper::Request<hyper::body::Incoming>| async move {
            let resp = match req.uri().path() {
                "/t.Echo/Unary" => server_grpc().unary(Unary { fail: false }, req).await,
                "/t.Echo/Fail" => server_grpc().unary(Unary { fail: true }, req).await,
                "/t.Echo/Sum" => server_grpc().client_streaming(Sum, req).await,
                "/t.Echo/Bidi" => server_grpc().streaming(Bidi { count: false }, req).await,
                "/t.Echo/Count" => server_grpc().streaming(Bidi { count: true }, req).await,
                _ => Status::unimplemented("no such method").into_http(),
            };
            Ok::<_, std::convert::Infallible>(resp)
        });
    let _ = hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
        .await;
}
