//! This node's pods, as a stream of changes: kube-runtime's watcher over
//! `GET /api/v1/pods?fieldSelector=spec.nodeName=NODE`, which lists, then watches from the
//! list's resourceVersion, follows bookmarks, and lists again after `410 Gone` (a `Init` …
//! `InitDone` round: pods absent from it are gone). Errors back off (kube-runtime's default:
//! 800 ms doubling to 30 s) and the stream goes on.

use crate::cluster::types::Pod;
use futures::Stream;
use kube::Api;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};

use super::Cluster;

/// The field selector of this node's pods (the one kubelet itself uses).
pub fn node_selector(node: &str) -> String {
    format!("spec.nodeName={node}")
}

/// The pods scheduled to `node`, as watcher events.
pub fn node_pods(
    cluster: &Cluster,
    node: &str,
) -> impl Stream<Item = Result<Event<Pod>, watcher::Error>> + Send + use<> {
    let api: Api<Pod> = Api::all(cluster.client());
    watcher::watcher(api, watcher::Config::default().fields(&node_selector(node))).default_backoff()
}

/// A watch error in words (the API server's message kept; no library text).
pub fn error_words(e: &watcher::Error) -> String {
    let status = |s: &kube::core::Status| {
        let m = s.message.trim();
        if m.is_empty() {
            format!("the API server answered {}", s.code)
        } else {
            format!("the API server answered {}: {m}", s.code)
        }
    };
    let client = |what: &str, e: &kube::Error| match e {
        kube::Error::Api(s) => format!("{what}: {}", status(s)),
        other => format!("{what}: {}", super::transport_words(other)),
    };
    match e {
        watcher::Error::InitialListFailed(e) => client("cannot list this node's pods", e),
        watcher::Error::WatchStartFailed(e) => client("cannot watch this node's pods", e),
        watcher::Error::WatchFailed(e) => client("the watch of this node's pods broke", e),
        watcher::Error::WatchError(s) => {
            format!("the watch of this node's pods ended: {}", status(s))
        }
        watcher::Error::NoResourceVersion => {
            "the API server's pod list has no resourceVersion, so it cannot be watched".to_owned()
        }
    }
}
