//! `List` and `Versions` a page at a time: every page size gives the same listing
//! as one big page (own books by name, then others' public books by name and
//! owner), with deleted names, prefixes and private books of others handled, and
//! a page token taken to another controller goes on where it left off.

use redcloud_proto::controller::{self as pb, controller_client::ControllerClient};
use redcloud_tests::TestCluster;
use tonic::transport::Channel;

fn with_token<T>(token: &str, msg: T) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    r.metadata_mut().insert(
        "authorization",
        format!("Bearer {token}").parse().expect("token"),
    );
    r
}

/// Every page of the listing, each at most `page_size`, concatenated.
async fn all_pages(
    raw: &mut ControllerClient<Channel>,
    token: &str,
    prefix: &str,
    owner: &str,
    page_size: u32,
) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut page_token = String::new();
    loop {
        let r = raw
            .list(with_token(
                token,
                pb::ListRequest {
                    prefix: prefix.into(),
                    owner: owner.into(),
                    page_size,
                    page_token: page_token.clone(),
                },
            ))
            .await
            .expect("list")
            .into_inner();
        assert!(
            r.files.len() <= page_size as usize,
            "page of {} > {page_size}",
            r.files.len()
        );
        out.extend(r.files.into_iter().map(|f| (f.owner, f.name)));
        if r.next_page_token.is_empty() {
            return out;
        }
        page_token = r.next_page_token;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listings_page_through_everything_once_in_order() {
    let cluster = TestCluster::with(redcloud_tests::ClusterSpec {
        controllers: 3,
        ..Default::default()
    })
    .await;
    let me = cluster.token.clone().expect("token");
    let mut mine = cluster.client().await;
    let mut anon = cluster.anonymous_client_of(0).await;
    anon.register("bea", "bea-password")
        .await
        .expect("register");
    let bea_token = anon
        .login("bea", "bea-password")
        .await
        .expect("login")
        .token;
    let mut bea = cluster.client().await;
    bea.set_token(Some(&bea_token)).expect("token");

    // Mine: 40 names, "b-07" deleted, "b-11" with a second version. Bea's: 30 names,
    // the even ones public, "a-04" public then made private by a new version.
    for i in 0..40 {
        let name = format!("{}-{i:02}", if i % 2 == 0 { "a" } else { "b" });
        mine.upload_bytes(bytes::Bytes::from(format!("mine {i}")), &name, false)
            .await
            .expect("upload");
    }
    mine.upload_bytes(bytes::Bytes::from_static(b"again"), "b-11", false)
        .await
        .expect("upload");
    mine.delete("b-07").await.expect("delete");
    for i in 0..30 {
        let name = format!("{}-{i:02}", if i % 3 == 0 { "a" } else { "c" });
        bea.upload_bytes(bytes::Bytes::from(format!("bea {i}")), &name, i % 2 == 0)
            .await
            .expect("upload");
    }
    bea.upload_bytes(bytes::Bytes::from_static(b"private now"), "a-06", false)
        .await
        .expect("upload");

    let mut raw = ControllerClient::connect(format!("http://{}", cluster.controller_addr(0)))
        .await
        .expect("connect");
    let whole = all_pages(&mut raw, &me, "", "", 5000).await;
    let mut own: Vec<(String, String)> = (0..40)
        .filter(|i| *i != 7)
        .map(|i| {
            let n = format!("{}-{i:02}", if i % 2 == 0 { "a" } else { "b" });
            (redcloud_tests::TEST_USER.to_string(), n)
        })
        .collect();
    own.sort();
    let mut public: Vec<(String, String)> = (0..30)
        .filter(|i| i % 2 == 0 && *i != 6)
        .map(|i| {
            let n = format!("{}-{i:02}", if i % 3 == 0 { "a" } else { "c" });
            ("bea".to_string(), n)
        })
        .collect();
    public.sort_by(|a, b| (&a.1, &a.0).cmp(&(&b.1, &b.0)));
    let expected: Vec<(String, String)> = own.iter().chain(public.iter()).cloned().collect();
    assert_eq!(whole, expected, "one big page");
    for size in [1, 2, 7, 39, 40, 41] {
        assert_eq!(
            all_pages(&mut raw, &me, "", "", size).await,
            expected,
            "pages of {size}"
        );
    }
    // A prefix, across both sections.
    let a_only: Vec<(String, String)> = expected
        .iter()
        .filter(|(_, n)| n.starts_with("a-"))
        .cloned()
        .collect();
    assert_eq!(all_pages(&mut raw, &me, "a-", "", 3).await, a_only);
    // One owner's namespace: only what the caller may read.
    let beas: Vec<(String, String)> = public.clone();
    let mut beas_by_name = beas.clone();
    beas_by_name.sort_by(|a, b| a.1.cmp(&b.1));
    assert_eq!(all_pages(&mut raw, &me, "", "bea", 4).await, beas_by_name);
    // The client library pages too.
    let listed: Vec<(String, String)> = mine
        .list("")
        .await
        .expect("list")
        .into_iter()
        .map(|f| (f.owner, f.name))
        .collect();
    assert_eq!(listed, expected);

    // A token from one controller goes on at another (once it has the same state).
    cluster
        .wait_converged(&[0, 1, 2], std::time::Duration::from_secs(60))
        .await;
    let first = raw
        .list(with_token(
            &me,
            pb::ListRequest {
                page_size: 10,
                ..Default::default()
            },
        ))
        .await
        .expect("list")
        .into_inner();
    let mut other = ControllerClient::connect(format!("http://{}", cluster.controller_addr(2)))
        .await
        .expect("connect");
    let rest = other
        .list(with_token(
            &me,
            pb::ListRequest {
                page_size: 5000,
                page_token: first.next_page_token,
                ..Default::default()
            },
        ))
        .await
        .expect("list")
        .into_inner();
    let joined: Vec<(String, String)> = first
        .files
        .into_iter()
        .chain(rest.files)
        .map(|f| (f.owner, f.name))
        .collect();
    assert_eq!(joined, expected);

    // Versions, a page at a time, newest first, the current one marked once.
    for i in 0..11 {
        mine.upload_bytes(bytes::Bytes::from(format!("v{i}")), "many.txt", false)
            .await
            .expect("upload");
    }
    let all = mine.versions("many.txt").await.expect("versions");
    assert_eq!(all.len(), 11);
    assert_eq!(all.iter().filter(|v| v.current).count(), 1);
    assert!(all[0].current, "newest first");
    let mut paged = Vec::new();
    let mut page_token = String::new();
    loop {
        let r = raw
            .versions(with_token(
                &me,
                pb::VersionsRequest {
                    name: "many.txt".into(),
                    page_size: 4,
                    page_token: page_token.clone(),
                    ..Default::default()
                },
            ))
            .await
            .expect("versions")
            .into_inner();
        assert!(r.versions.len() <= 4);
        paged.extend(r.versions);
        if r.next_page_token.is_empty() {
            break;
        }
        page_token = r.next_page_token;
    }
    let ids = |v: &[pb::VersionInfo]| -> Vec<String> {
        v.iter()
            .map(|v| v.file.as_ref().expect("file").file_id.clone())
            .collect()
    };
    assert_eq!(ids(&paged), ids(&all));
}
