//! A real local HTTP/1.1 server for the fetch tests (tokio listener + hyper), answering from a
//! script: each request gets the reply the route gives for its path and index.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};

/// One scripted answer.
pub struct Reply {
    pub status: u16,
    pub retry_after: Option<&'static str>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn ok(body: Vec<u8>) -> Reply {
        Reply {
            status: 200,
            retry_after: None,
            body,
        }
    }
    pub fn status(status: u16, body: &str) -> Reply {
        Reply {
            status,
            retry_after: None,
            body: body.as_bytes().to_vec(),
        }
    }
}

type Route = dyn Fn(&str, usize) -> Reply + Send + Sync;

/// The server; stops (its accept loop and every connection) when dropped.
pub struct TestServer {
    pub base_url: String,
    requests: Arc<Mutex<Vec<String>>>,
    task: JoinHandle<()>,
}

impl TestServer {
    /// Serves on a loopback port chosen by the OS; `route(path_and_query, index)` answers the
    /// `index`-th request (0-based, over all paths).
    pub async fn start(route: impl Fn(&str, usize) -> Reply + Send + Sync + 'static) -> TestServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let base_url = format!("http://{}", listener.local_addr().expect("address"));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let route: Arc<Route> = Arc::new(route);
        let task = tokio::spawn({
            let requests = Arc::clone(&requests);
            async move {
                // Owned here: dropping the accept loop aborts every connection.
                let mut connections = JoinSet::new();
                loop {
                    let Ok((stream, _)) = listener.accept().await else {
                        return;
                    };
                    let (route, requests) = (Arc::clone(&route), Arc::clone(&requests));
                    connections.spawn(async move {
                        let service = hyper::service::service_fn(
                            move |request: Request<hyper::body::Incoming>| {
                                let path = request
                                    .uri()
                                    .path_and_query()
                                    .map(|value| value.as_str().to_owned())
                                    .unwrap_or_default();
                                let index = {
                                    let mut requests = requests.lock().expect("lock");
                                    requests.push(path.clone());
                                    requests.len() - 1
                                };
                                let reply = route(&path, index);
                                let mut response = Response::builder().status(reply.status);
                                if let Some(retry_after) = reply.retry_after {
                                    response = response.header("retry-after", retry_after);
                                }
                                let response = response
                                    .body(Full::new(Bytes::from(reply.body)))
                                    .expect("response");
                                async move { Ok::<_, Infallible>(response) }
                            },
                        );
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    });
                }
            }
        });
        TestServer {
            base_url,
            requests,
            task,
        }
    }

    /// Paths asked so far, in order.
    pub fn requests(&self) -> Vec<String> {
        self.requests.lock().expect("lock").clone()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}
