//! Whether a `cluster status` answer shows a healthy cluster, and if not, what is
//! wrong, in words (for `cluster status`'s exit code and `cluster wait --healthy`).

use crate::client::ClusterStatusResponse;

/// Everything that keeps the cluster from being healthy; empty when it is: every
/// known controller and chunkserver answered, every chunkserver is healthy, and no
/// chunk is lost or has fewer copies than it should.
pub fn problems(s: &ClusterStatusResponse) -> Vec<String> {
    let mut out = Vec::new();
    let down: Vec<&str> = s
        .controllers
        .iter()
        .filter(|c| !c.reachable)
        .map(|c| c.node_id.as_str())
        .collect();
    if !down.is_empty() {
        out.push(format!("controller(s) not answering: {}", down.join(", ")));
    }
    let failed: Vec<&str> = s
        .chunkservers
        .iter()
        .filter(|c| !c.healthy)
        .map(|c| c.node_id.as_str())
        .collect();
    if !failed.is_empty() {
        out.push(format!("chunkserver(s) failed: {}", failed.join(", ")));
    }
    let (ca, cl) = (s.controllers_answered as usize, s.controllers.len());
    let (sa, sl) = (s.chunkservers_answered as usize, s.chunkservers.len());
    if ca < cl || sa < sl {
        out.push(format!(
            "partial answer: {ca} of {cl} controllers and {sa} of {sl} chunkservers answered"
        ));
    }
    if s.chunkservers.is_empty() {
        out.push("no chunkservers known".to_string());
    }
    if s.lost_chunks > 0 {
        out.push(format!("{} chunk(s) with no healthy copy", s.lost_chunks));
    }
    if s.under_replicated_chunks > 0 {
        out.push(format!(
            "{} under-replicated chunk(s)",
            s.under_replicated_chunks
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::problems;
    use crate::pb::{ChunkserverStatus, ClusterStatusResponse, ControllerStatus};

    fn healthy() -> ClusterStatusResponse {
        ClusterStatusResponse {
            controllers: vec![ControllerStatus {
                node_id: "c1".into(),
                reachable: true,
                is_self: true,
                ..Default::default()
            }],
            chunkservers: (1..=3)
                .map(|i| ChunkserverStatus {
                    node_id: format!("cs{i}"),
                    healthy: true,
                    answered: true,
                    ..Default::default()
                })
                .collect(),
            controllers_answered: 1,
            chunkservers_answered: 3,
            ..Default::default()
        }
    }

    #[test]
    fn a_cluster_with_every_node_up_and_every_chunk_copied_is_healthy() {
        assert_eq!(problems(&healthy()), Vec::<String>::new());
    }

    #[test]
    fn each_kind_of_trouble_is_named() {
        let mut s = healthy();
        s.chunkservers[1].healthy = false;
        s.chunkservers[1].answered = false;
        s.chunkservers_answered = 2;
        assert_eq!(
            problems(&s),
            [
                "chunkserver(s) failed: cs2",
                "partial answer: 1 of 1 controllers and 2 of 3 chunkservers answered"
            ]
        );

        let mut s = healthy();
        s.controllers.push(ControllerStatus {
            node_id: "c2".into(),
            reachable: false,
            ..Default::default()
        });
        assert_eq!(
            problems(&s),
            [
                "controller(s) not answering: c2",
                "partial answer: 1 of 2 controllers and 3 of 3 chunkservers answered"
            ]
        );

        let mut s = healthy();
        s.chunkservers[0].answered = false;
        s.chunkservers_answered = 2;
        assert_eq!(
            problems(&s),
            ["partial answer: 1 of 1 controllers and 2 of 3 chunkservers answered"]
        );

        let mut s = healthy();
        s.lost_chunks = 2;
        s.under_replicated_chunks = 5;
        assert_eq!(
            problems(&s),
            [
                "2 chunk(s) with no healthy copy",
                "5 under-replicated chunk(s)"
            ]
        );

        let mut s = healthy();
        s.chunkservers.clear();
        s.chunkservers_answered = 0;
        assert_eq!(problems(&s), ["no chunkservers known"]);
    }
}
