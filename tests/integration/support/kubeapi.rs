//! An in-process Kubernetes API server: the few core/v1 endpoints pullprobe reads, serving
//! objects serialised from k8s-openapi's own types. No API server can run on these machines;
//! this one follows the API's documented behaviour where pullprobe depends on it:
//!
//! - `GET /api/v1/namespaces/NS/{pods,secrets,serviceaccounts}/NAME`: the object, or a
//!   `Status` with 404 (NotFound) or 403 (Forbidden, for what [`FakeKubeApi::forbid`] names);
//! - `GET /api/v1/namespaces/NS/events?fieldSelector=involvedObject.name=…`: an EventList;
//! - `GET /api/v1/pods?fieldSelector=spec.nodeName=…`: a PodList with the current
//!   resourceVersion, and with `watch=1` a stream of watch events from the requested
//!   resourceVersion on (replayed from history, then live), `BOOKMARK`s when asked for, and an
//!   `ERROR` event with a `410 Gone` Status when the requested version is older than the
//!   compacted history ([`FakeKubeApi::compact`]), as etcd compaction makes it;
//! - a bearer token on every request (401 otherwise).

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use k8s_openapi::api::core::v1::{Event, Pod, Secret, ServiceAccount};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::{CancellationToken, DropGuard};

pub const TOKEN: &str = "fake-api-token";

#[derive(Default)]
struct State {
    rv: u64,
    /// Every pod change in order: (resourceVersion, type, object).
    history: Vec<(u64, &'static str, Value)>,
    /// Watch requests with an older resourceVersion get `410 Gone`.
    compacted: u64,
    pods: BTreeMap<(String, String), Value>,
    secrets: BTreeMap<(String, String), Value>,
    service_accounts: BTreeMap<(String, String), Value>,
    events: Vec<Value>,
    /// `secrets/NS/NAME`, `pods`, `events`, `serviceaccounts`: answered 403.
    forbidden: Vec<String>,
    /// Open watches: their node filter and sender.
    watchers: Vec<(Option<String>, bool, mpsc::UnboundedSender<Value>)>,
    /// Request paths and queries, in order.
    requests: Vec<String>,
}

pub struct FakeKubeApi {
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
    _stop: DropGuard,
}

fn key(ns: &str, name: &str) -> (String, String) {
    (ns.to_owned(), name.to_owned())
}

impl FakeKubeApi {
    pub async fn start() -> Self {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(State::default()));
        let stop = CancellationToken::new();
        let (s, token) = (state.clone(), stop.clone());
        super::spawn_until(&stop, async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let s = s.clone();
                super::spawn_until(&token, async move {
                    let svc = hyper::service::service_fn(move |req| {
                        let s = s.clone();
                        async move { Ok::<_, Infallible>(handle(&s, &req)) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tcp), svc)
                        .await;
                });
            }
        });
        FakeKubeApi {
            addr,
            state,
            _stop: stop.drop_guard(),
        }
    }

    /// A kubeconfig for this server (plain HTTP, a bearer token), written in `dir`.
    pub fn kubeconfig(&self, dir: &Path) -> PathBuf {
        let path = dir.join("kubeconfig");
        std::fs::write(
            &path,
            format!(
                "apiVersion: v1\nkind: Config\ncurrent-context: fake\nclusters:\n- name: fake\n  cluster:\n    server: http://{}\ncontexts:\n- name: fake\n  context:\n    cluster: fake\n    user: fake\nusers:\n- name: fake\n  user:\n    token: {TOKEN}\n",
                self.addr
            ),
        )
        .unwrap();
        path
    }

    /// Adds or replaces a pod (ADDED or MODIFIED to the watches).
    pub fn put_pod(&self, mut pod: Pod) {
        let mut s = self.state.lock().unwrap();
        s.rv += 1;
        pod.metadata.resource_version = Some(s.rv.to_string());
        if pod.metadata.uid.is_none() {
            pod.metadata.uid = Some(format!("uid-{}", s.rv));
        }
        let k = key(
            pod.metadata.namespace.as_deref().unwrap(),
            pod.metadata.name.as_deref().unwrap(),
        );
        let v = object("Pod", &pod);
        let kind = if s.pods.insert(k, v.clone()).is_some() {
            "MODIFIED"
        } else {
            "ADDED"
        };
        let rv = s.rv;
        s.history.push((rv, kind, v.clone()));
        broadcast(&mut s, kind, &v);
    }

    pub fn delete_pod(&self, ns: &str, name: &str) {
        let mut s = self.state.lock().unwrap();
        s.rv += 1;
        if let Some(mut v) = s.pods.remove(&key(ns, name)) {
            v["metadata"]["resourceVersion"] = json!(s.rv.to_string());
            let rv = s.rv;
            s.history.push((rv, "DELETED", v.clone()));
            broadcast(&mut s, "DELETED", &v);
        }
    }

    /// Removes a pod without telling the open watches: an event they missed, which only a
    /// re-list shows (after [`FakeKubeApi::compact`]).
    pub fn delete_pod_unseen(&self, ns: &str, name: &str) {
        let mut s = self.state.lock().unwrap();
        s.rv += 1;
        if let Some(mut v) = s.pods.remove(&key(ns, name)) {
            v["metadata"]["resourceVersion"] = json!(s.rv.to_string());
            let rv = s.rv;
            s.history.push((rv, "DELETED", v));
        }
    }

    /// Ends the open watches the way the API server's timeout does (the stream closes); the
    /// client watches again from the last resourceVersion it saw.
    pub fn end_watches(&self) {
        self.state.lock().unwrap().watchers.clear();
    }

    /// The current resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.state.lock().unwrap().rv
    }

    /// Forgets history up to now: a watch from an older resourceVersion gets `410 Gone`,
    /// open watches are sent one and closed (the API server's "too old resource version").
    pub fn compact(&self) {
        let mut s = self.state.lock().unwrap();
        s.compacted = s.rv;
        let rv = s.rv;
        for (_, _, tx) in s.watchers.drain(..) {
            let _ = tx.send(gone(rv));
        }
    }

    /// Sends a BOOKMARK with the current resourceVersion to the watches that asked for them.
    pub fn bookmark(&self) {
        let mut s = self.state.lock().unwrap();
        s.rv += 1;
        let rv = s.rv.to_string();
        s.watchers.retain(|(_, bookmarks, tx)| {
            !*bookmarks
                || tx
                    .send(json!({"type": "BOOKMARK", "object": {"kind": "Pod", "apiVersion": "v1", "metadata": {"resourceVersion": rv}}}))
                    .is_ok()
        });
    }

    pub fn put_secret(&self, secret: &Secret) {
        let mut s = self.state.lock().unwrap();
        let k = key(
            secret.metadata.namespace.as_deref().unwrap(),
            secret.metadata.name.as_deref().unwrap(),
        );
        s.secrets.insert(k, object("Secret", secret));
    }

    pub fn put_service_account(&self, sa: &ServiceAccount) {
        let mut s = self.state.lock().unwrap();
        let k = key(
            sa.metadata.namespace.as_deref().unwrap(),
            sa.metadata.name.as_deref().unwrap(),
        );
        s.service_accounts.insert(k, object("ServiceAccount", sa));
    }

    pub fn add_event(&self, event: &Event) {
        self.state
            .lock()
            .unwrap()
            .events
            .push(object("Event", event));
    }

    /// Answers 403 to requests for `what`: `secrets/NS/NAME`, or a resource (`events`).
    pub fn forbid(&self, what: &str) {
        self.state.lock().unwrap().forbidden.push(what.to_owned());
    }

    /// The paths (with queries) requested so far.
    pub fn requests(&self) -> Vec<String> {
        self.state.lock().unwrap().requests.clone()
    }

    /// How many watches are open now.
    pub fn open_watches(&self) -> usize {
        let mut s = self.state.lock().unwrap();
        s.watchers.retain(|(_, _, tx)| !tx.is_closed());
        s.watchers.len()
    }
}

fn object<T: serde::Serialize>(kind: &str, o: &T) -> Value {
    let mut v = serde_json::to_value(o).unwrap();
    v["kind"] = json!(kind);
    v["apiVersion"] = json!("v1");
    v
}

fn node_of(pod: &Value) -> Option<&str> {
    pod["spec"]["nodeName"].as_str()
}

fn broadcast(s: &mut State, kind: &str, v: &Value) {
    s.watchers.retain(|(node, _, tx)| {
        if node.as_deref().is_some_and(|n| node_of(v) != Some(n)) {
            return !tx.is_closed();
        }
        tx.send(json!({"type": kind, "object": v})).is_ok()
    });
}

fn gone(rv: u64) -> Value {
    json!({"type": "ERROR", "object": {
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": format!("too old resource version: older than {rv}"),
        "reason": "Expired", "code": 410
    }})
}

fn status(code: StatusCode, reason: &str, message: &str) -> Response<BoxBody<Bytes, Infallible>> {
    let body = json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message, "reason": reason, "code": code.as_u16()
    });
    json_response(code, &body)
}

fn json_response(code: StatusCode, v: &Value) -> Response<BoxBody<Bytes, Infallible>> {
    Response::builder()
        .status(code)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(v.to_string())).boxed())
        .unwrap()
}

/// The query parameter `name`, percent-decoded.
fn param(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == name).then(|| {
            url::form_urlencoded::parse(format!("v={v}").as_bytes())
                .next()
                .map(|(_, v)| v.into_owned())
                .unwrap_or_default()
        })
    })
}

/// `a=b,c=d` → the value of `field`.
fn selector_value(selector: &str, field: &str) -> Option<String> {
    selector.split(',').find_map(|t| {
        let (k, v) = t.split_once('=')?;
        (k == field).then(|| v.to_owned())
    })
}

fn handle(
    state: &Arc<Mutex<State>>,
    req: &Request<Incoming>,
) -> Response<BoxBody<Bytes, Infallible>> {
    let path = req.uri().path().to_owned();
    let query = req.uri().query().unwrap_or("").to_owned();
    let mut s = state.lock().unwrap();
    s.requests.push(format!("{path}?{query}"));
    let authorized = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        == Some(&format!("Bearer {TOKEN}"));
    if !authorized {
        return status(StatusCode::UNAUTHORIZED, "Unauthorized", "Unauthorized");
    }
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let user = "system:serviceaccount:pullprobe:pullprobe";
    let forbidden = |s: &State, resource: &str, ns: &str, name: Option<&str>| {
        s.forbidden
            .iter()
            .any(|f| f == resource || name.is_some_and(|n| *f == format!("{resource}/{ns}/{n}")))
    };
    match parts.as_slice() {
        ["api", "v1", "namespaces", ns, resource, name] => {
            let (ns, resource, name) = (*ns, *resource, *name);
            if forbidden(&s, resource, ns, Some(name)) {
                return status(
                    StatusCode::FORBIDDEN,
                    "Forbidden",
                    &format!(
                        "{resource} \"{name}\" is forbidden: User \"{user}\" cannot get resource \"{resource}\" in API group \"\" in the namespace \"{ns}\""
                    ),
                );
            }
            let map = match resource {
                "pods" => &s.pods,
                "secrets" => &s.secrets,
                "serviceaccounts" => &s.service_accounts,
                _ => {
                    return status(
                        StatusCode::NOT_FOUND,
                        "NotFound",
                        "the server could not find the requested resource",
                    );
                }
            };
            match map.get(&key(ns, name)) {
                Some(v) => json_response(StatusCode::OK, v),
                None => status(
                    StatusCode::NOT_FOUND,
                    "NotFound",
                    &format!("{resource} \"{name}\" not found"),
                ),
            }
        }
        ["api", "v1", "namespaces", ns, "events"] => {
            if forbidden(&s, "events", ns, None) {
                return status(
                    StatusCode::FORBIDDEN,
                    "Forbidden",
                    &format!(
                        "events is forbidden: User \"{user}\" cannot list resource \"events\" in API group \"\" in the namespace \"{ns}\""
                    ),
                );
            }
            let selector = param(&query, "fieldSelector").unwrap_or_default();
            let name = selector_value(&selector, "involvedObject.name");
            let items: Vec<&Value> = s
                .events
                .iter()
                .filter(|e| {
                    e["metadata"]["namespace"].as_str() == Some(*ns)
                        && name
                            .as_deref()
                            .is_none_or(|n| e["involvedObject"]["name"].as_str() == Some(n))
                })
                .collect();
            json_response(
                StatusCode::OK,
                &json!({"kind": "EventList", "apiVersion": "v1", "metadata": {"resourceVersion": s.rv.to_string()}, "items": items}),
            )
        }
        ["api", "v1", "pods"] => {
            if forbidden(&s, "pods", "", None) {
                return status(
                    StatusCode::FORBIDDEN,
                    "Forbidden",
                    &format!(
                        "pods is forbidden: User \"{user}\" cannot list resource \"pods\" in API group \"\" at the cluster scope"
                    ),
                );
            }
            let selector = param(&query, "fieldSelector").unwrap_or_default();
            let node = selector_value(&selector, "spec.nodeName");
            let watch = matches!(param(&query, "watch").as_deref(), Some("1" | "true"));
            if !watch {
                let items: Vec<&Value> = s
                    .pods
                    .values()
                    .filter(|p| node.as_deref().is_none_or(|n| node_of(p) == Some(n)))
                    .collect();
                return json_response(
                    StatusCode::OK,
                    &json!({"kind": "PodList", "apiVersion": "v1", "metadata": {"resourceVersion": s.rv.to_string()}, "items": items}),
                );
            }
            let from: u64 = param(&query, "resourceVersion")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            let bookmarks = matches!(
                param(&query, "allowWatchBookmarks").as_deref(),
                Some("true")
            );
            let (tx, rx) = mpsc::unbounded_channel();
            if from < s.compacted {
                let _ = tx.send(gone(s.compacted));
            } else {
                for (rv, kind, v) in &s.history {
                    if *rv > from && node.as_deref().is_none_or(|n| node_of(v) == Some(n)) {
                        let _ = tx.send(json!({"type": kind, "object": v}));
                    }
                }
                s.watchers.push((node, bookmarks, tx));
            }
            let stream = futures::stream::unfold(rx, |mut rx| async move {
                let v = rx.recv().await?;
                let mut line = v.to_string();
                line.push('\n');
                Some((Ok::<_, Infallible>(Frame::data(Bytes::from(line))), rx))
            });
            Response::builder()
                .status(StatusCode::OK)
                .header("content-type", "application/json")
                .header("transfer-encoding", "chunked")
                .body(BodyExt::boxed(StreamBody::new(stream)))
                .unwrap()
        }
        _ => status(
            StatusCode::NOT_FOUND,
            "NotFound",
            "the server could not find the requested resource",
        ),
    }
}
