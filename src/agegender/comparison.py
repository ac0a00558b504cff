"""The comparison chapter's runs: the profile's models, with the constant baseline and the
off-the-shelf peer tested on exactly the models' test rows, gathered once (``05_comparison``).

    everyone = gather("cpu")
    tables.headline_table(everyone.all)
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from agegender import baselines, peer, provenance
from agegender.results import store, tables
from agegender.results.store import RunResults


@dataclass(frozen=True)
class Comparison:
    """The runs compared, by kind; ``peer_missing`` says why the peer was not tested (None when
    it was)."""

    profile: str
    models: dict[str, RunResults]
    peers: dict[str, RunResults]
    baselines: dict[str, RunResults]
    peer_missing: str | None
    parameters: dict = field(default_factory=dict)
    started: float = field(default_factory=time.time)

    @property
    def all(self) -> dict[str, RunResults]:
        """Every run, models first, then the peers and the baselines."""
        return {**self.models, **self.peers, **self.baselines}

    def record(self) -> dict:
        """The chapter's provenance: its parameters, the data of the models' runs, the weights
        of every run."""
        first = next(iter(self.models.values())).provenance
        return provenance.collect(
            profile=self.profile,
            parameters={"profile": self.profile, **self.parameters},
            started=self.started,
            dataset_sha256=first["dataset_sha256"],
            split_sha256=first["split_sha256"],
            weights=tables.weights_caption(self.all),
        )


def gather(
    profile: str,
    *,
    max_eval_images: int | None = None,
    seed: int = 0,
    evaluate_peer: bool = True,
    data=None,
) -> Comparison:
    """Read the profile's models' results, test the constant baseline and (with `evaluate_peer`,
    where the peer extra is installed) the peer in both modes on the same test rows, and check
    that every run was tested on the same images.

    Raises:
        AgegenderError: no model results for the profile; runs tested on different images;
            published results of the baseline or peer that would change (`store.check_replaceable`).
    """
    from agegender.data.dataset import prepare

    started = time.time()
    models = store.load_models(profile)
    data = data or prepare()
    subset = {"max_eval_images": max_eval_images, "seed": seed}
    baselines.evaluate_on_utkface(data, profile=profile, **subset)
    peer_missing = peer.available() if evaluate_peer else "`evaluate_peer` is off"
    if peer_missing is None:
        for mode in peer.MODES:
            peer.evaluate_on_utkface(data, profile=profile, mode=mode, **subset)
    comparison = Comparison(
        profile=profile,
        models=models,
        peers=store.load_peers(profile),
        baselines=store.load_baselines(profile),
        peer_missing=peer_missing,
        parameters={**subset, "evaluate_peer": evaluate_peer},
        started=started,
    )
    tables.check_same_test_images(comparison.all)
    return comparison
