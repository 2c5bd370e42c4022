//! `grant_check`: authorizing a request with a million grants stored.
//!
//! - `raw_verify_strict`: the signature floor, measured in the same run;
//! - `lookup_miss`: a grant read from SQLite (cache miss);
//! - `lookup_hit`: a grant from the grant cache;
//! - `authorize_warm`: the whole hot path for a repeated carte: verified-carte cache hit,
//!   claims re-checked, grant cache hit, `admin_scope ∩ grant`.
//!
//! Also prints the process's resident memory with the grants loaded.

mod common;

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use grant_node::name::Name;
use grant_node::scope::Scope;
use grant_node::store::owners::Owner;

fn bench(c: &mut Criterion) {
    let node = common::node();
    let grants: u64 = if common::full() { 1_000_000 } else { 10_000 };
    let alice = Name::parse("alice").expect("a name");
    {
        let conn = node.state.db.lock().expect("db");
        grant_node::store::owners::insert_owner(
            &conn,
            &Owner {
                name: alice.clone(),
                password_hash: None,
                controller: None,
                email: None,
                created: 0,
            },
        )
        .expect("owner");
        let tx = conn.transaction().expect("tx");
        for i in 0..grants {
            let app = Name::parse(&format!("app{i}")).expect("a name");
            grant_node::store::grants::put_grant(
                &tx,
                &alice,
                &app,
                Scope::from_bits(0x80000),
                None,
                1,
            )
            .expect("grant");
        }
        grant_node::store::grants::put_grant(
            &tx,
            &alice,
            &node.app,
            Scope::from_bits(0x80000),
            None,
            1,
        )
        .expect("grant");
        tx.commit().expect("commit");
    }
    node.state
        .owners
        .write()
        .expect("lock")
        .insert(alice.clone());
    eprintln!(
        "grant_check: {grants} grants stored; resident memory {:.0} MiB",
        common::rss_mib()
    );

    let carte = node.carte(1, 0x80000);
    let decoded = grant_node::carte::decode(&carte).expect("decodes");
    let message = grant_node::carte::codec::signed_message(&decoded.payload);
    let vk = node.key.verifying_key();
    let mut group = c.benchmark_group("grant_check");
    group.bench_function("raw_verify_strict", |b| {
        b.iter(|| {
            vk.verify_strict(black_box(&message), &decoded.signature)
                .expect("ok")
        })
    });
    let names: Vec<Name> = (0..4096u64)
        .map(|i| Name::parse(&format!("app{}", (i * 7919) % grants)).expect("a name"))
        .collect();
    let mut i = 0usize;
    group.bench_function("lookup_miss", |b| {
        b.iter(|| {
            i += 1;
            let app = &names[i % names.len()];
            node.state.grants.invalidate(&alice, app);
            node.runtime
                .block_on(
                    node.state
                        .grants
                        .get(&node.state.db, &alice, black_box(app)),
                )
                .expect("ok")
        })
    });
    group.bench_function("lookup_hit", |b| {
        b.iter(|| {
            node.runtime
                .block_on(
                    node.state
                        .grants
                        .get(&node.state.db, &alice, black_box(&names[0])),
                )
                .expect("ok")
        })
    });
    group.bench_function("authorize_warm", |b| {
        b.iter(|| {
            node.runtime
                .block_on(node.state.authorize(
                    black_box(&carte),
                    node.peer,
                    Scope::from_bits(0x80000),
                ))
                .expect("allowed")
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
