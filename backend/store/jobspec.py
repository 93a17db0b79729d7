"""Job kinds and their parameters, defined once (DESIGN.md §2, §5). Torch-free; imports no FastAPI.

Each kind's parameters are one pydantic model below. The HTTP API uses them as the ``params`` of
``POST /api/jobs`` (so their JSON Schema is the OpenAPI one), the CLI builds them from its options, and the
worker parses a job's stored parameters with them before it runs it. What reaches the queue is always the
**canonical form** (:func:`canonical`): validated, every default filled in, ``None`` left out, lists of ids
sorted and deduplicated. The queue's dedupe key is a hash of that form, so the same request from the page,
the CLI or a worker's follow-up is the same job (one row).

The models' constraints are exactly the ones JSON Schema states (types, ranges, lengths, patterns), so the
OpenAPI schema says what the server accepts. The one rule it cannot state — an evolution goes from an earlier
epoch to a later one — is :meth:`JobParams.rule_problem`: the API answers it as a 404 (that evolution does not
exist, see :func:`check_references`), the CLI and the worker as a one-line error (:func:`parse`).
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from sqlalchemy.orm import Session

from backend.store import queries, queue
from backend.store.config import Store
from backend.store.errors import ConflictError, NotFoundError
from backend.store.shards import shard_ranges

#: Ids are positive 32-bit integers.
MAX_ID = 2**31 - 1


def _sorted_unique(values: list[int] | None) -> list[int] | None:
    """The canonical order of a set of ids: ascending, each once."""
    return None if values is None else sorted(set(values))


def _integral(value: Any) -> Any:
    """JSON Schema's ``integer`` includes numbers like ``3.0`` (JSON has one number type): take them as 3. Strings
    and booleans stay what they are, and strict validation refuses them."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def Int(ge: int, le: int, **field: Any) -> Any:  # noqa: N802 - a type, spelled like one
    """An integer in ``[ge, le]``, strict but for integral floats (see :func:`_integral`)."""
    return Annotated[int, Field(ge=ge, le=le, **field), BeforeValidator(_integral)]


DbId = Int(1, MAX_ID)
Epoch = Int(0, 1_000_000)
ClassIdx = Int(0, 1_000_000)
Seed = Int(0, MAX_ID, description="Random seed.")
#: A set of run ids, stored ascending and without repeats.
RunIds = Annotated[list[DbId], Field(min_length=1, max_length=1000), AfterValidator(_sorted_unique)]
#: A set of class indices, stored ascending and without repeats.
ClassSet = Annotated[list[ClassIdx], Field(min_length=1, max_length=10_000), AfterValidator(_sorted_unique)]
#: A space's name.
SpaceName = Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9_ .:@+-]+$")]
#: Flags whose default (False) the canonical form leaves out: a request that does not spell one out is the same
#: job as one that says ``false``, and jobs queued before the flag existed keep their dedupe key.
_FLAGS = ("replace", "force")


class AlreadyComputed(ConflictError):
    """What a job would compute exists already and the request did not ask to recompute it (``force`` /
    ``replace``): nothing is queued. The API answers 409; the CLI says so and queues nothing."""


class JobParamsError(ValueError):
    """Parameters that are not a valid job of their kind (one readable line)."""


class JobParams(BaseModel):
    """Base of every kind's parameters: strict types (no ``"1"`` for 1), no unknown keys."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, allow_inf_nan=False)

    #: The job kind these parameters belong to.
    kind: ClassVar[str]

    def canonical(self) -> dict[str, Any]:
        """The canonical form: defaults filled in, ``None`` and unset flags left out, id lists sorted and
        deduplicated."""
        data = self.model_dump(mode="json", exclude_none=True)
        for flag in _FLAGS:
            if data.get(flag) is False:
                del data[flag]
        return data

    def rule_problem(self) -> str | None:
        """What breaks a rule JSON Schema cannot state, or None."""
        return None


class DemoParams(JobParams):
    """Generate the demo dataset and train the demo runs, then register them and queue the space and importance."""

    kind: ClassVar[str] = "demo"

    size: Literal["default", "small"] = Field(
        "default", description="default: 4,000 + 1,000 images; small: 288 + 96 (a quick look)."
    )
    seed: Seed = Field(0, description="Seed of the images and the training.")


class BuildSpaceParams(JobParams):
    """Build a unified semantic space on a base snapshot (hyper-parameters: paper Appendix A.4)."""

    kind: ClassVar[str] = "build_space"

    base_snapshot_id: DbId = Field(description="The snapshot whose neurons define the space.")
    name: SpaceName | None = Field(
        None, description="Space name (default: `<run>@<epoch>` of the base snapshot)."
    )
    k: Int(1, 100) = Field(10, description="Stimuli per neuron (paper: 10).")
    dim: Int(2, 512) = Field(30, description="Embedding dimension (paper: 30).")
    epochs: Int(1, 100_000) = Field(
        2000, description="Neuron-embedding epochs E (paper: 10,000 on ImageNet)."
    )
    lr: Annotated[float, Field(gt=0.0, le=10.0)] = Field(0.05, description="Learning rate α (paper: 0.05).")
    negatives: Int(1, 100) = Field(3, description="Random negative neurons R per pair (paper: 3).")
    seed: Seed = Field(0, description="Seeds the embedding, the pairings and the 2-D map.")
    batch_size: Int(1, 4096) = Field(128, description="Images per forward batch.")
    compute_runs: RunIds | None = Field(
        None,
        description="Once the space is built, place every epoch of these runs in it (stored ascending, once each).",
    )
    replace: bool = Field(
        False,
        description="Rebuild a space of this name that exists already (its computed snapshots are dropped); "
        "without it an existing name is refused (409).",
    )

    def space_name(self, session: Session) -> str:
        """The name the space gets: ``name``, or ``<run>@<epoch>`` of the base snapshot."""
        if self.name is not None:
            return self.name
        snapshot = queries.get_snapshot(session, self.base_snapshot_id)
        return f"{queries.get_run(session, snapshot.run_id).name}@{snapshot.epoch}"


class AddSnapshotParams(JobParams):
    """Compute one run × epoch in a space (stimuli, vectors, positions, patches, metrics)."""

    kind: ClassVar[str] = "add_snapshot"
    # "exactly one of space_id and space_name", stated in the JSON Schema too (so OpenAPI says what is accepted)
    model_config = ConfigDict(
        json_schema_extra={
            "oneOf": [
                {"required": ["space_id"], "properties": {"space_id": {"type": "integer"}}},
                {"required": ["space_name"], "properties": {"space_name": {"type": "string"}}},
            ]
        }
    )

    space_id: DbId | None = Field(None, description="The space (give this or `space_name`).")
    space_name: SpaceName | None = Field(
        None,
        description="The space by name (instead of `space_id`): it may name a space whose `build_space` job is "
        "still queued or running; the job then waits for the space.",
    )
    snapshot_id: DbId
    force: bool = Field(
        False,
        description="Recompute a snapshot already computed in the space (without it: 409, nothing queued).",
    )
    shards: Int(1, 4096) | None = Field(
        None,
        description="Split the stimuli pass into this many `stimuli_shard` jobs over image ranges, which any "
        "workers run in parallel; this job waits for them and merges their partial top-k into exactly the "
        "one-pass stimuli. Default (or 1): one pass inside this job.",
    )

    @model_validator(mode="after")
    def _one_space(self) -> AddSnapshotParams:
        if (self.space_id is None) == (self.space_name is None):
            raise ValueError("give exactly one of space_id and space_name")
        return self

    @field_validator("shards")
    @classmethod
    def _one_shard_is_one_pass(cls, shards: int | None) -> int | None:
        return None if shards == 1 else shards  # one canonical form, so one dedupe key, for the one-pass job


class EvolutionParams(JobParams):
    """An evolution ``epoch_from → epoch_to`` of a run, for some classes (default: all)."""

    kind: ClassVar[str] = "evolution"

    run_id: DbId
    epoch_from: Epoch = Field(
        description="Epoch t (earlier than `epoch_to`; otherwise 404: no such evolution)."
    )
    epoch_to: Epoch = Field(description="Epoch t′.")
    classes: ClassSet | None = Field(
        None, description="Class indices (stored ascending, once each); default: every class of the run."
    )
    images: Int(1, 100_000) = Field(128, description="Images per class (paper: 128).")
    seed: Seed = Field(0, description="Seeds the choice of each class's images.")

    def rule_problem(self) -> str | None:
        if self.epoch_from >= self.epoch_to:
            return "epoch_from must be earlier than epoch_to"
        return None


class ImportanceParams(EvolutionParams):
    """Importance of every neuron's evolution ``epoch_from → epoch_to`` of a run for some classes (Eq 5–7)."""

    kind: ClassVar[str] = "importance"

    force: bool = Field(
        False,
        description="Recompute when every requested class is computed already (without it: 409, nothing queued).",
    )


class RevertEvalParams(EvolutionParams):
    """Reversion check (paper Sec 4.4, Table 1) of the evolutions ``epoch_from → epoch_to`` of a run."""

    kind: ClassVar[str] = "revert_eval"

    reps: Int(1, 100) = Field(5, description="Random bins averaged per layer.")


class EvalParams(JobParams):
    """Evaluate a space against the paper's findings (issue 14): the report in ``data/reports/<space>/``."""

    kind: ClassVar[str] = "eval"

    space_id: DbId = Field(description="The space to evaluate (its base run is the healthy reference).")
    reps: Int(1, 100) = Field(5, description="Reversion repetitions per stage (paper: 5).")
    images: Int(1, 100_000) = Field(
        16,
        description="Reversion images per class and split (paper: 128 of ~1,300; 16 keeps the demo in budget).",
    )
    queries: Int(10, 100_000) = Field(400, description="Query neurons sampled per alignment setting.")
    probe_images: Int(16, 100_000) = Field(
        512, description="Images whose responses define the raw-activation baselines."
    )
    epochs_per_run: Int(1, 1000) = Field(
        4, description="Epochs per run (evenly spread) in the alignment measures and their baselines."
    )
    umap_baseline: bool = Field(
        True,
        description="Also score a UMAP fitted per snapshot on raw activations (a baseline; ~1 min on a CPU).",
    )
    sweep_epochs: Int(1, 100_000) = Field(
        300, description="Neuron-embedding epochs per dim of the sensitivity sweep."
    )
    seed: Seed = Field(0, description="Seeds every sample of the evaluation.")


class StimuliShardParams(JobParams):
    """The stimuli pass of one snapshot over one of ``n_shards`` image ranges (``worker.engine.shards``); the
    partial top-k is stored, and the shards of a snapshot merge into exactly the unsharded stimuli."""

    kind: ClassVar[str] = "stimuli_shard"

    snapshot_id: DbId
    n_shards: Int(1, 4096, description="Image ranges the pass is split into.")
    shard: Int(0, 4095, description="Which range (0-based).")
    k: Int(1, 1000) = Field(10, description="Stimuli per neuron.")
    batch_size: Int(1, 4096) = Field(128, description="Images per batch; ranges start on whole batches.")

    def rule_problem(self) -> str | None:
        if self.shard >= self.n_shards:
            return f"shard {self.shard} is not below n_shards {self.n_shards}"
        return None


#: Kind → its parameters' model. The kinds a worker runs and the API accepts.
PARAMS: dict[str, type[JobParams]] = {
    model.kind: model
    for model in (
        DemoParams,
        BuildSpaceParams,
        AddSnapshotParams,
        ImportanceParams,
        RevertEvalParams,
        EvalParams,
        StimuliShardParams,
    )
}
KINDS: tuple[str, ...] = tuple(PARAMS)
#: Kind → default priority (higher is claimed first): when one worker drains a mixed queue, inputs come before
#: what needs them. The CLI, the demo plan, the run tracker and the build's follow-ups enqueue with it.
PRIORITY: dict[str, int] = {
    "demo": 100,
    "build_space": 50,
    "add_snapshot": 20,
    "stimuli_shard": 20,
    "importance": 10,
    "revert_eval": 5,
    "eval": 1,
}


def _describe(kind: str, error: ValidationError) -> str:
    first = error.errors(include_url=False)[0]
    where = ".".join(str(part) for part in first["loc"]) or "params"
    if first["type"] == "missing":
        return f"{kind} job: parameter {where!r} is missing"
    if first["type"] == "extra_forbidden":
        return f"{kind} job: unknown parameter {where!r}"
    return f"{kind} job: {where}: {first['msg']} (got {first.get('input')!r})"


def parse(kind: str, params: dict[str, Any] | None, *, rules: bool = True) -> JobParams:
    """The parameters of a ``kind`` job as its model; :class:`JobParamsError` (one line) if they are not valid.

    Args:
        kind: a job kind (:data:`KINDS`).
        params: the parameters (a JSON object); None means none given.
        rules: also refuse what breaks :meth:`JobParams.rule_problem` (the API checks it as a reference).
    """
    model = PARAMS.get(kind)
    if model is None:
        raise JobParamsError(f"unknown job kind {kind!r}; expected one of {', '.join(KINDS)}")
    if params is not None and not isinstance(params, dict):
        raise JobParamsError(f"{kind} job: parameters must be a JSON object, got {type(params).__name__}")
    try:
        spec = model.model_validate(params or {})
    except ValidationError as exc:
        raise JobParamsError(_describe(kind, exc)) from None
    problem = spec.rule_problem() if rules else None
    if problem:
        raise JobParamsError(f"{kind} job: {problem}")
    return spec


def canonical(kind: str, params: dict[str, Any] | None) -> dict[str, Any]:
    """The canonical form of a ``kind`` job's parameters (see the module docstring); raises :class:`JobParamsError`."""
    return parse(kind, params).canonical()


def enqueue_job(
    store: Store, spec: JobParams, priority: int = 0, max_attempts: int = 3
) -> tuple[queue.JobInfo, bool]:
    """:func:`backend.store.queue.enqueue` the job ``spec`` describes, in its canonical form."""
    return queue.enqueue(store, spec.kind, spec.canonical(), priority=priority, max_attempts=max_attempts)


def enqueue_job_in(
    session: Session, spec: JobParams, priority: int = 0, max_attempts: int = 3
) -> tuple[queue.JobInfo, bool] | None:
    """:func:`backend.store.queue.enqueue_in` (inside the caller's transaction) in the canonical form."""
    return queue.enqueue_in(session, spec.kind, spec.canonical(), priority, max_attempts)


def check_references(session: Session, spec: JobParams) -> None:
    """Refuse parameters naming what does not exist (:class:`NotFoundError`: a run, snapshot, space, class, or
    an evolution that goes back in time), a space name already taken or being built (:class:`ConflictError`), or
    a result that exists already without ``force`` (:class:`AlreadyComputed`, a ConflictError)."""
    if isinstance(spec, BuildSpaceParams):
        _check_build_space(session, spec)
    elif isinstance(spec, AddSnapshotParams):
        _check_add_snapshot(session, spec)
    elif isinstance(spec, EvalParams):
        queries.get_space(session, spec.space_id)
    elif isinstance(spec, StimuliShardParams):
        queries.get_snapshot(session, spec.snapshot_id)
    elif isinstance(spec, EvolutionParams):
        run = queries.get_run(session, spec.run_id)
        problem = spec.rule_problem()
        if problem:
            raise NotFoundError(
                f"run {run.id} has no evolution from epoch {spec.epoch_from} to epoch {spec.epoch_to}: {problem}"
            )
        epochs = queries.snapshot_epochs(session, run.id)
        for epoch in (spec.epoch_from, spec.epoch_to):
            if epoch not in epochs:
                raise NotFoundError(f"run {run.id} has no snapshot at epoch {epoch}")
        n_classes = queries.class_count(session, run)
        bad = [c for c in spec.classes or [] if c >= n_classes]
        if bad:
            raise NotFoundError(f"class {bad[0]} not found: run {run.id} has {n_classes} classes")
        if isinstance(spec, ImportanceParams) and not spec.force:
            wanted = set(spec.classes or range(n_classes))
            done = {
                i.class_idx for i in queries.list_importances(session, run.id, spec.epoch_from, spec.epoch_to)
            }
            if wanted <= done:
                raise AlreadyComputed(
                    f"the importance of run {run.name!r} from epoch {spec.epoch_from} to {spec.epoch_to} is "
                    f"already computed for {'every requested class' if spec.classes else 'every class'}; nothing "
                    'queued (--force, or "force": true, recomputes it)'
                )


def building_space(session: Session, name: str) -> queue.JobInfo | None:
    """The queued or running ``build_space`` job that makes the space ``name`` (by its ``name`` or default
    ``<run>@<epoch>``), oldest first; None if there is none."""
    for job in queue.active_jobs_in(session, BuildSpaceParams.kind):
        try:
            spec = BuildSpaceParams.model_validate(job.params)
            if spec.space_name(session) == name:
                return job
        except (ValidationError, NotFoundError):  # a job row that can no longer run builds nothing
            continue
    return None


def _check_build_space(session: Session, spec: BuildSpaceParams) -> None:
    name = spec.space_name(session)
    if not spec.replace and queries.find_space(session, name) is not None:
        raise ConflictError(
            f'a space named {name!r} already exists; rebuild it with --replace (API: "replace": true) or '
            f"remove it first (conceptevo rm space {name!r})"
        )
    other = building_space(session, name)
    if other is not None and other.params != spec.canonical():
        raise ConflictError(
            f"space {name!r} is already being built by job {other.id} ({other.status}) with other parameters; "
            f"wait for it, or cancel it (conceptevo jobs cancel {other.id})"
        )
    for run_id in spec.compute_runs or []:
        queries.get_run(session, run_id)


def _check_shards(session: Session, shards: int, snapshot, space) -> None:
    """Refuse a shard count the space's pass cannot be split into (:func:`backend.store.shards.shard_ranges`,
    the rule the worker splits by), at the door instead of in the worker."""
    n_images = int(
        queries.get_dataset(session, queries.get_run(session, snapshot.run_id).dataset_id).n_images
    )
    try:
        shard_ranges(
            n_images, shards, int(space.params.get("batch_size", 128)), int(space.params.get("k", 10))
        )
    except ConflictError as exc:
        raise ConflictError(f"space {space.name!r}: {exc}") from None


def _check_add_snapshot(session: Session, spec: AddSnapshotParams) -> None:
    snapshot = queries.get_snapshot(session, spec.snapshot_id)
    if spec.space_id is not None:
        space = queries.get_space(session, spec.space_id)
    else:
        assert spec.space_name is not None  # one of the two, by the model's validator
        found = queries.find_space(session, spec.space_name)
        if found is None:
            if building_space(session, spec.space_name) is None:
                raise NotFoundError(
                    f"no space {spec.space_name!r} and no job building it; build it first "
                    f"(conceptevo build-space --name {spec.space_name!r})"
                )
            return  # the job waits for the space's build job
        space = found
    if spec.shards is not None:
        _check_shards(session, spec.shards, snapshot, space)
    if not spec.force and space.id in queries.spaces_of_snapshots(session, [snapshot.id])[snapshot.id]:
        run = queries.get_run(session, snapshot.run_id)
        raise AlreadyComputed(
            f"epoch {snapshot.epoch} of run {run.name!r} is already computed in space {space.name!r}; nothing "
            'queued (--force, or "force": true, recomputes it)'
        )
