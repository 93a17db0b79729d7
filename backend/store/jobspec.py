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

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError
from sqlalchemy.orm import Session

from backend.store import queries, queue
from backend.store.config import Store
from backend.store.errors import ConflictError, NotFoundError

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


class JobParamsError(ValueError):
    """Parameters that are not a valid job of their kind (one readable line)."""


class JobParams(BaseModel):
    """Base of every kind's parameters: strict types (no ``"1"`` for 1), no unknown keys."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, allow_inf_nan=False)

    #: The job kind these parameters belong to.
    kind: ClassVar[str]

    def canonical(self) -> dict[str, Any]:
        """The canonical form: defaults filled in, ``None`` left out, id lists sorted and deduplicated."""
        return self.model_dump(mode="json", exclude_none=True)

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
    name: Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9_ .:@+-]+$")] | None = (
        Field(None, description="Space name (default: `<run>@<epoch>` of the base snapshot).")
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


class AddSnapshotParams(JobParams):
    """Compute one run × epoch in a space (stimuli, vectors, positions, patches, metrics)."""

    kind: ClassVar[str] = "add_snapshot"

    space_id: DbId
    snapshot_id: DbId


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


class RevertEvalParams(EvolutionParams):
    """Reversion check (paper Sec 4.4, Table 1) of the evolutions ``epoch_from → epoch_to`` of a run."""

    kind: ClassVar[str] = "revert_eval"

    reps: Int(1, 100) = Field(5, description="Random bins averaged per layer.")


#: Kind → its parameters' model. The kinds a worker runs and the API accepts.
PARAMS: dict[str, type[JobParams]] = {
    model.kind: model
    for model in (DemoParams, BuildSpaceParams, AddSnapshotParams, ImportanceParams, RevertEvalParams)
}
KINDS: tuple[str, ...] = tuple(PARAMS)


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
    an evolution that goes back in time) or a space name already taken (:class:`ConflictError`)."""
    if isinstance(spec, BuildSpaceParams):
        queries.get_snapshot(session, spec.base_snapshot_id)
        if spec.name is not None and queries.find_space(session, spec.name) is not None:
            raise ConflictError(f"a space named {spec.name!r} already exists")
        for run_id in spec.compute_runs or []:
            queries.get_run(session, run_id)
    elif isinstance(spec, AddSnapshotParams):
        queries.get_space(session, spec.space_id)
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
