//! The witness settings: which witnesses a node's mirror requires and how many
//! (`witnesses`, `witness_quorum`), and whether the node is a witness itself (`witness_name`).

use anyhow::{bail, Context};
use serde::Deserialize;

use crate::registry::note::Witness;
use crate::registry::witness::WitnessPolicy;
use crate::uri::CheckedUri;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileWitness {
    /// The witness's verifier key, `name+id+base64`.
    pub(super) key: String,
    /// Where to ask it what it cosigned (optional).
    pub(super) url: Option<String>,
}

/// The mirror's witness policy; `embedded`: the node runs its own registry, which gathers no
/// cosignatures, so a quorum could never be met.
pub(super) fn policy(
    list: &[FileWitness],
    quorum: Option<usize>,
    embedded: bool,
) -> anyhow::Result<WitnessPolicy> {
    let mut policy = WitnessPolicy::default();
    for (i, w) in list.iter().enumerate() {
        let witness = Witness::parse_vkey(&w.key)
            .map_err(anyhow::Error::msg)
            .with_context(|| format!("witnesses[{i}].key"))?;
        policy.witnesses.push(witness);
        if let Some(url) = &w.url {
            let url = url.trim_end_matches('/');
            CheckedUri::parse_node(&format!("{url}/"))
                .with_context(|| format!("witnesses[{i}].url {url:?}"))?;
            policy.urls.push(url.to_owned());
        }
    }
    let quorum = quorum.unwrap_or(0);
    if quorum > policy.witnesses.len() {
        bail!(
            "witness_quorum {quorum}: more than the {} witnesses listed",
            policy.witnesses.len()
        );
    }
    if quorum > 0 && embedded {
        bail!(
            "witness_quorum {quorum}: the embedded registry gathers no cosignatures; \
             point the node at a registry run with --witness (registry = \"https://…\")"
        );
    }
    policy.quorum = quorum;
    Ok(policy)
}

/// The name this node cosigns under, if it is a witness.
pub(super) fn name(name: Option<&str>) -> anyhow::Result<Option<String>> {
    match name {
        Some(n) if !signed_note::is_key_name_valid(n) => {
            bail!("witness_name {n:?}: no spaces, no '+', not empty")
        }
        other => Ok(other.map(str::to_owned)),
    }
}
