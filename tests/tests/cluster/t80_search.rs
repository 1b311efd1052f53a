//! Search: known passages find their book in every language of the corpus; the
//! index follows replication (every controller indexes what it learns by gossip,
//! deleted books leave the results, and all controllers answer the same query with
//! the same ranked hits and scores).

use redcloud_search::index::{Index, Query};
use redcloud_tests::corpus;

/// (query, the book that must rank first)
const KNOWN: &[(&str, &str)] = &[
    ("\"call me ishmael\"", "pg2701.txt"),
    ("\"it is a truth universally acknowledged\"", "pg1342.txt"),
    ("\"als gregor samsa eines morgens\"", "pg22367.txt"),
    ("\"en un lugar de la mancha\"", "pg2000.txt"),
    ("\"nel mezzo del cammin di nostra vita\"", "pg1012.txt"),
    // Accents folded: the text says "couché".
    (
        "\"longtemps je me suis couche de bonne heure\"",
        "pg2650.txt",
    ),
    ("\"gallia est omnis divisa\"", "pg218.txt"),
    ("\"as armas e os barões assinalados\"", "pg3333.txt"),
    ("väinämöinen", "pg7000.txt"),
    // Dutch, with the book's old spelling.
    ("\"ik ben makelaar in koffi\"", "pg11024.txt"),
    // A Chinese word inside runs of characters.
    ("孫悟空", "pg23962.txt"),
];

fn corpus_index() -> Index {
    let mut ix = Index::open_in_memory().expect("index");
    for b in corpus::catalog() {
        let bytes = std::fs::read(b.path()).expect("read book");
        ix.add(&b.file, &b.sha256, &bytes).expect("index book");
    }
    ix
}

#[test]
fn known_passages_rank_first_in_every_language() {
    let ix = corpus_index();
    for (text, want) in KNOWN {
        let hits = ix
            .search(&Query {
                text: text.to_string(),
                ..Default::default()
            })
            .expect("search");
        assert!(!hits.is_empty(), "{text}: no hits");
        assert_eq!(
            hits[0].name, *want,
            "{text}: ranked first {} ({}), expected {want}",
            hits[0].name, hits[0].title
        );
        assert!(
            hits[0].snippet.contains('\u{2}'),
            "{text}: snippet without a highlighted match: {:?}",
            hits[0].snippet
        );
    }
}

mod cluster {
    use std::time::Duration;

    use redcloud_cli::pb;
    use redcloud_tests::{ClusterSpec, TestCluster, corpus, wait_until};

    const BOOKS: &[&str] = &[
        "pg2701.txt",  // Moby Dick
        "pg1342.txt",  // Pride and Prejudice
        "pg11.txt",    // Alice
        "pg22367.txt", // Die Verwandlung
        "pg2000.txt",  // Don Quijote
        "pg23962.txt", // Journey to the West (Chinese)
        "pg4650.txt",  // Candide
        "pg1661.txt",  // Sherlock Holmes
    ];

    async fn search(c: &TestCluster, i: usize, query: &str) -> pb::SearchResponse {
        c.client_of(i)
            .await
            .search(pb::SearchRequest {
                query: query.into(),
                limit: 20,
                ..Default::default()
            })
            .await
            .expect("search")
    }

    async fn wait_indexed(c: &TestCluster, n: u64) {
        for i in 0..c.controllers.len() {
            wait_until(
                &format!("controller {i} has indexed {n} books"),
                Duration::from_secs(60),
                || async move {
                    let r = search(c, i, "the").await;
                    r.indexed_books == n && r.pending_books == 0
                },
            )
            .await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_controller_indexes_gossiped_books_and_ranks_them_identically() {
        let c = TestCluster::with(ClusterSpec {
            controllers: 3,
            ..Default::default()
        })
        .await;
        let mut client = c.client_of(0).await;
        for name in BOOKS {
            let path = corpus::dir().join("books").join(name);
            client
                .upload_file(&path, name, false, |_| {})
                .await
                .expect("upload");
        }
        // Controllers 1 and 2 learn the books by gossip and fetch their chunks.
        wait_indexed(&c, BOOKS.len() as u64).await;

        for query in [
            "\"call me ishmael\"",
            "whale",
            "孫悟空",
            "alice rabbit",
            "candide",
            "the",
        ] {
            let mut answers: Vec<Vec<pb::SearchHit>> = Vec::new();
            for i in 0..3 {
                answers.push(search(&c, i, query).await.hits);
            }
            assert!(!answers[0].is_empty(), "{query}: no hits");
            assert_eq!(
                answers[0], answers[1],
                "{query}: controllers 0 and 1 differ"
            );
            assert_eq!(
                answers[0], answers[2],
                "{query}: controllers 0 and 2 differ"
            );
        }
        let top = |r: &pb::SearchResponse| r.hits.first().map(|h| h.name.clone());
        assert_eq!(
            top(&search(&c, 2, "\"call me ishmael\"").await).as_deref(),
            Some("pg2701.txt")
        );
        assert_eq!(
            top(&search(&c, 1, "孫悟空").await).as_deref(),
            Some("pg23962.txt")
        );

        // A deleted book leaves the results of every controller.
        c.client_of(1)
            .await
            .delete("pg2701.txt")
            .await
            .expect("delete");
        wait_indexed(&c, BOOKS.len() as u64 - 1).await;
        for i in 0..3 {
            let r = search(&c, i, "ishmael").await;
            assert!(
                r.hits.iter().all(|h| h.name != "pg2701.txt"),
                "controller {i} still finds the deleted book"
            );
        }
        // Filters.
        let mut client = c.client_of(2).await;
        let r = client
            .search(pb::SearchRequest {
                query: "der".into(),
                language: "de".into(),
                ..Default::default()
            })
            .await
            .expect("search");
        assert!(!r.hits.is_empty() && r.hits.iter().all(|h| h.language == "German"));
        let r = client
            .search(pb::SearchRequest {
                query: "holmes".into(),
                author: "doyle".into(),
                ..Default::default()
            })
            .await
            .expect("search");
        assert_eq!(r.hits.len(), 1);
        assert_eq!(r.hits[0].name, "pg1661.txt");
        // A query with no words is refused clearly.
        let e = client
            .search(pb::SearchRequest {
                query: "*** ---".into(),
                ..Default::default()
            })
            .await
            .expect_err("no words");
        assert!(e.to_string().contains("no words"), "{e}");
    }
}
