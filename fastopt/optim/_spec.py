"""What declares an optimizer: its hyperparameters, state slots and kernel, once (the specs are in ``specs.py``).

From an ``OptimizerSpec`` are derived: the optimizer class (``make_class``: its ``__init__`` signature with torch's
names and defaults, its docstring), the functional ``<name>_`` form (``fastopt.functional.optim``), the compiled
hyperparameter checks both share (``HyperLayout``: one validation path, at C speed), and every registry
(``fastopt.optim.__all__``, ``fastopt.__all__``, ``fastopt.functional.__all__``, the estimators' solver names).
The kernel id comes from csrc/optim.h's algorithm list; which slots a step uses is the C rule
``fo_optim_required_slots`` (asked through ``HParams.required_slots``), so it exists once, beside the kernel.
"""
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from fastopt import _optim
from fastopt.optim._formats import DEFAULT_COMPENSATION, DEFAULT_MIN_QUANTIZED_SIZE, FORMAT_KEYS

NONNEG, FINITE, UNIT, BETA, BETAS, FLAG, PAIR, BETAS3, OPTPOS = (
    _optim.NONNEG, _optim.FINITE, _optim.UNIT, _optim.BETA, _optim.BETAS, _optim.FLAG, _optim.PAIR, _optim.BETAS3,
    _optim.OPTPOS)
_TUPLES = {BETAS: 2, PAIR: 2, BETAS3: 3}      # checks of a tuple filling that many consecutive fields
REQUIRED = object()                           # functional_hypers' default of an argument without one


class _CopyOfParam:
    """``Slot(initial=COPY_OF_PARAM)``: the slot starts as a copy of its param (Schedule-Free's z)."""

    def __repr__(self):
        return "COPY_OF_PARAM"


COPY_OF_PARAM = _CopyOfParam()


@dataclass(frozen=True)
class Hyper:
    """A hyperparameter: group key ``name`` (torch's), default, check (one of NONNEG, FINITE, UNIT, BETAS, FLAG,
    PAIR, BETAS3, OPTPOS: None or > 0), the fo_hparams field it fills (None: checked only; a tuple, BETAS, PAIR or
    BETAS3, fills ``field`` and the next fields of csrc/optim.h's list: ``beta1``, ``beta2``), ``what`` for messages
    ("Invalid {what}: {value}"), keyword-only in the class signature, and required (no default) in the functional
    form."""
    name: str
    default: Any
    check: int
    field: Optional[str] = None
    what: Optional[str] = None
    kwonly: bool = False
    functional_required: bool = False

    @property
    def message_name(self):
        return self.what or self.name


@dataclass(frozen=True)
class Slot:
    """A state array of a param, in kernel slot order: state-dict ``name``, functional argument name (``arg``),
    ``initial`` value (a number, the name of the hyperparameter holding it, or ``COPY_OF_PARAM``: the param's value
    when the state is created, before its first step), and how the functional form takes
    it: positional, or keyword (an optional slot defaults to None). ``quantize``: how ``state_dtype`` may store it
    (``fastopt.optim._formats``): "signed" (a first moment, a momentum: the signed code map), "unsigned" (a second
    moment, an accumulator: the unsigned map; bfloat16 either way), or None (an iterate, always the param's dtype)."""
    name: str
    arg: Optional[str] = None
    initial: Any = 0.0
    keyword: bool = False
    optional: bool = False
    quantize: Optional[str] = None

    def __post_init__(self):
        if self.quantize not in (None, "signed", "unsigned"):
            raise ValueError(f"Slot {self.name}: quantize must be None, 'signed' or 'unsigned'")
        if self.quantize is not None and self.initial is COPY_OF_PARAM:
            raise ValueError(f"Slot {self.name}: a copy of the param is an iterate, it cannot be quantized")

    @property
    def arg_name(self):
        return self.arg or self.name


@dataclass(frozen=True)
class OptimizerSpec:
    """One optimizer. ``algo``: the kernel's name in csrc/optim.h; ``fixed``: fo_hparams fields set for every step
    (AdamW: decoupled decay); ``aux``: the name of a per-param float64 scalar state (NAdam's running product),
    ``aux_initial`` its value before the first step (a number, or the name of the hyperparameter holding it; a
    tuple of those: ``aux`` is a float64 array of that length, Schedule-Free's (lr_max, weight_sum));
    ``fresh_slot0``: slot 0 takes the gradient itself at its first step (SGD); ``uses_step``: the
    functional form takes ``step``; ``cross_check(hparams)``: raises on an invalid combination; ``parent``: the
    class this one's derives from (AdamW from Adam); ``doc``: the update rule as formulas; ``functional_doc``:
    notes of the functional form; ``bench``: the hyperparameters ``fastopt bench`` steps it with (defaults
    otherwise); ``elementwise``: each element's update depends only on that element's param, gradient and state
    and on per-param scalars (step, ``aux``), so a slice of a param steps as the whole does (what
    ``fastopt.distributed.ZeroRedundancyOptimizer`` relies on; False for a rule with per-tensor reductions);
    ``peer``: (module, class) of the reference implementation where torch.optim has none, a torch optimizer
    taking the same arguments (``fastopt bench`` compares with it when it is installed); ``norm_sweep``: the arrays
    a first sweep for per-tensor norms (a trust ratio) reads beyond the step's own, traffic the benchmark's probe
    must also move (LARS: param and gradient, 2; LAMB: param and the moments again, 3; 0: no such sweep);
    ``interpolation``: ``group -> beta`` of a Schedule-Free rule, whose param holds y during training and x for
    evaluation: the class gets ``train()`` / ``eval()`` (``fastopt.optim.schedulefree``), slot 0 holding z."""
    name: str
    algo: str
    hypers: tuple
    slots: tuple
    doc: str
    fixed: dict = field(default_factory=dict)
    aux: Optional[str] = None
    aux_initial: Any = 1.0
    fresh_slot0: bool = False
    uses_step: bool = True
    cross_check: Optional[Callable] = None
    parent: Optional[str] = None
    functional_doc: str = ""
    bench: dict = field(default_factory=dict)
    elementwise: bool = True
    peer: Optional[tuple] = None
    norm_sweep: int = 0
    interpolation: Optional[Callable] = None

    @property
    def state_formats(self):
        """True if ``state_dtype`` may store some slot in a low-precision format (and the params be bfloat16): an
        element-wise rule, or one whose only cross-element reductions are its norm sweep's (LARS, LAMB: the block
        wrapper takes each tensor's blocks twice, the sums first, csrc/optim_formats.h), with a slot that is not
        an iterate."""
        return (self.elementwise or self.norm_sweep > 0) and any(s.quantize is not None for s in self.slots)

    @property
    def aux_size(self):
        """0: ``aux`` is a 0-d float64 array; n: a float64 array of n values (``aux_initial`` a tuple)."""
        return len(self.aux_initial) if isinstance(self.aux_initial, tuple) else 0

    @property
    def algo_id(self):
        return _optim.ALGOS[self.algo]

    @property
    def functional_name(self):
        return self.name.lower() + "_"

    def defaults(self):
        return {h.name: h.default for h in self.hypers}

    def layout(self):
        """Checks of a tuple of group values, one per hyper, in spec order (the class's path)."""
        return _optim.HyperLayout(self.algo_id, [(h.check, h.field, h.message_name) for h in self.hypers],
                                  dict(self.fixed), self.cross_check)

    def functional_hypers(self):
        """(argument name, default or REQUIRED, check, field, what) of the functional form: a tuple split into
        its fields (betas into beta1, beta2)."""
        out = []
        for h in self.hypers:
            if h.field is None:
                continue
            if h.check in _TUPLES:
                first = _optim.FIELDS.index(h.field)
                for i, arg in enumerate(_optim.FIELDS[first:first + _TUPLES[h.check]]):
                    what = f"{h.message_name} (element {i})" if h.check == PAIR else f"beta parameter at index {i}"
                    out.append((arg, REQUIRED if h.functional_required else h.default[i],
                                FINITE if h.check == PAIR else BETA, arg, what))
            else:
                out.append((h.name, REQUIRED if h.functional_required else h.default, h.check, h.field,
                            h.message_name))
        return out


def _exec(name, params, body, namespace, doc):
    """A function ``name(params)`` running ``body``, compiled from source so that its signature is exact and its
    call costs what a hand-written one does (the technique of ``dataclasses``)."""
    src = f"def {name}({', '.join(params)}):\n    {body}\n"
    exec(src, namespace)
    fn = namespace[name]
    fn.__doc__ = doc
    return fn


def make_class(spec, base):
    """The optimizer class of ``spec``, subclass of ``base``: ``__init__(self, params, <hypers>)`` collects the
    hyperparameters into the group defaults."""
    from fastopt.optim.optimizer import Optimizer
    ns = {"_init": Optimizer.__init__}
    params, items = ["self", "params"], []
    for i, h in enumerate(spec.hypers):
        if h.kwonly and "*" not in params:
            params.append("*")
        ns[f"_d{i}"] = h.default
        params.append(f"{h.name}=_d{i}")
        items.append(f"{h.name}={h.name}")
    if "*" not in params:
        params.append("*")
    ns["_dmq"] = DEFAULT_MIN_QUANTIZED_SIZE        # the state-format options of every optimizer (_formats.py)
    ns["_dcomp"] = DEFAULT_COMPENSATION
    params += ["state_dtype=None", "min_quantized_size=_dmq", "compensation=_dcomp"]
    items += [f"{k}={k}" for k in FORMAT_KEYS]
    init = _exec("__init__", params, f"_init(self, params, dict({', '.join(items)}))", ns,
                 f"Checks and stores the hyperparameters as the defaults of every param group (see {spec.name}).")
    init.__qualname__ = f"{spec.name}.__init__"
    return type(spec.name, (base,), {"__init__": init, "__doc__": spec.doc, "spec": spec,
                                     "__module__": "fastopt.optim", "__qualname__": spec.name})


def make_functional(spec):
    """The functional form ``<name>_(param, grad, <slots>, [aux], *, [step], <hypers>, [first_step])`` of
    ``spec``: updates ``param`` and the caller's state in place and returns ``param``."""
    hypers = spec.functional_hypers()
    kernel = _optim.FunctionalStep(_optim.HyperLayout(spec.algo_id, [(c, f, w) for _, _, c, f, w in hypers],
                                                      dict(spec.fixed), spec.cross_check),
                                   tuple(s.arg_name for s in spec.slots), spec.aux, spec.aux_size)
    ns = {"_kernel": kernel}
    positional = [s.arg_name + ("=None" if s.optional else "") for s in spec.slots if not s.keyword]
    params = ["param", "grad"] + positional + ([spec.aux] if spec.aux else []) + ["*"]
    params += ["step"] if spec.uses_step else []
    for i, (arg, default, _, _, _) in enumerate(hypers):
        ns[f"_d{i}"] = default
        params.append(arg if default is REQUIRED else f"{arg}=_d{i}")
    params += [s.arg_name + "=None" for s in spec.slots if s.keyword]
    params += ["first_step=False"] if spec.fresh_slot0 else []
    slots = "".join(s.arg_name + ", " for s in spec.slots)
    values = "".join(arg + ", " for arg, *_ in hypers)
    fresh = "_flag(first_step)" if spec.fresh_slot0 else "False"
    ns["_flag"] = _first_step
    body = (f"return _kernel(param, grad, ({slots}), {spec.aux or 'None'}, {'step' if spec.uses_step else 'None'}, "
            f"({values}), {fresh})")
    doc = (f"In-place {spec.name} step (:class:`fastopt.{spec.name}`: the update rule is in its docstring); "
           f"returns ``param``. {spec.functional_doc}").strip()
    fn = _exec(spec.functional_name, params, body, ns, doc)
    fn.__module__ = "fastopt.functional"
    return fn


def _first_step(value):
    if value is True or value is False:
        return value
    from fastopt._validation import check_flag
    return check_flag(value, "first_step")
