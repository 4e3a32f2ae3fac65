"""Run the reference Ovi implementation on a CPU-only torch the way it runs on a GPU.

Golden-output makers (never the test suite) use this to compute what the reference computes on
CUDA, on the CPU:

    from tests.golden.refenv import import_reference, cuda_autocast_emulation

    with import_reference("/work/ovi-ref") as ref:          # ref.module("ovi.modules.fusion")
        FusionModel = ref.module("ovi.modules.fusion").FusionModel
        with cuda_autocast_emulation():
            ...  # every torch.amp.autocast('cuda', ...) region now casts like CUDA autocast

What `import_reference` does while importing (and leaves in place for the imported modules):
- puts the reference checkout first on sys.path and runs the imports from its root (it reads
  configs from relative paths at import time);
- stubs packages that generation does not use and that are not installed (pydub, open_clip,
  optimum, cv2, pandas, ...): importing them works, calling anything in them raises;
- answers `torch.cuda.current_device()` with "cpu" during the import (a default argument);
- replaces the flash-attn wrapper (`flash_attention`, which asserts CUDA) in every imported
  reference module by `sdpa_flash_attention`: under the reference's inference conditions
  (batch 1, full lengths, global window) plain scaled-dot-product attention is the same function.

What `cuda_autocast_emulation` does: `torch.amp.autocast('cuda', ...)` silently disables itself on
a CPU-only torch, which changes the reference's numerics. Inside the context, autocast('cuda')
regions (including `enabled=False` ones and decorators created at import) are tracked on a stack,
and a TorchDispatchMode applies CUDA autocast's casting policy to every aten op of the innermost
enabled region. The op lists below are CUDA autocast's (aten/src/ATen/autocast_mode.cpp);
`check_policy_against_torch()` verifies them against the `AutocastCUDA` kernels the installed
torch registers. Composite ops (linear, conv*, SDPA, layer_norm, einsum, ...) are cast where
Python calls them by a TorchFunctionMode, like autocast casts them before they decompose; other
decompositions seen by the dispatch mode are mapped back to their op's policy (`_DECOMPOSED`).
"""
from __future__ import annotations

import contextlib
import functools
import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import os
import sys
import types
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode

DEFAULT_REFERENCE = "/work/ovi-ref"

# Imported by the reference but unused by generation; stubbed only when not installed.
DEFAULT_STUBS = ("pydub", "open_clip", "optimum", "cv2", "pandas", "moviepy", "omegaconf",
                 "dashscope", "torchvision", "soundfile", "datasets", "librosa", "einops")

# --- CUDA autocast policy ----------------------------------------------------------------------

LOWER = "lower_precision"  # cast floating args to the autocast dtype
FP32 = "fp32"  # cast floating args to float32
FP32_OPT_DTYPE = "fp32_set_opt_dtype"  # run with dtype=float32 unless a dtype is given
PROMOTE = "promote"  # cast floating args to their widest type

_POLICY_LISTS = {
    LOWER: """_convolution _convolution.deprecated conv1d conv2d conv3d conv_tbc conv_transpose1d
        conv_transpose2d.input conv_transpose3d.input convolution prelu addmm addmv addr matmul
        einsum mm mv linalg_vecdot linear addbmm baddbmm bmm chain_matmul linalg_multi_dot
        _thnn_fused_lstm_cell _thnn_fused_gru_cell lstm_cell gru_cell rnn_tanh_cell rnn_relu_cell
        _scaled_dot_product_flash_attention scaled_dot_product_attention cudnn_convolution
        cudnn_convolution_transpose""",
    FP32: """acos asin cosh erfinv exp expm1 log log10 log2 log1p reciprocal rsqrt sinh tan
        pow.Tensor_Scalar pow.Tensor_Tensor pow.Scalar softplus layer_norm native_layer_norm
        group_norm frobenius_norm.dim nuclear_norm nuclear_norm.dim cosine_similarity
        poisson_nll_loss cosine_embedding_loss nll_loss nll_loss2d hinge_embedding_loss kl_div
        l1_loss smooth_l1_loss huber_loss mse_loss margin_ranking_loss multilabel_margin_loss
        soft_margin_loss triplet_margin_loss multi_margin_loss binary_cross_entropy_with_logits
        dist pdist cdist renorm logsumexp upsample_nearest1d _upsample_nearest_exact1d
        upsample_nearest2d _upsample_nearest_exact2d upsample_nearest3d _upsample_nearest_exact3d
        upsample_linear1d upsample_bilinear2d _upsample_bilinear2d_aa upsample_trilinear3d
        upsample_bicubic2d _upsample_bicubic2d_aa rms_norm norm.Scalar norm.ScalarOpt_dim""",
    FP32_OPT_DTYPE: """prod prod.dim_int softmax.int log_softmax.int cumprod cumsum
        linalg_vector_norm linalg_matrix_norm linalg_matrix_norm.str_ord sum sum.dim_IntList""",
    PROMOTE: """addcdiv addcmul atan2 bilinear cross dot vdot grid_sampler index_put tensordot
        scatter_add""",
}
# binary_cross_entropy is registered only to raise ("unsafe to autocast"); not emulated.
_BANNED = {"binary_cross_entropy"}

POLICY: dict[str, str] = {op: policy for policy, ops in _POLICY_LISTS.items() for op in ops.split()}

# CPU decompositions of composite ops in the lists above -> the composite op's policy.
_DECOMPOSED = {
    "native_group_norm": FP32,  # group_norm
    "_softmax": FP32,  # softmax.int (dtype=float32 == cast the input)
    "_log_softmax": FP32,  # log_softmax.int
    "_fused_rms_norm": FP32,  # rms_norm
    "_scaled_dot_product_flash_attention_for_cpu": LOWER,  # scaled_dot_product_attention
    "upsample_nearest1d.vec": FP32, "upsample_nearest2d.vec": FP32,
    "upsample_nearest3d.vec": FP32, "_upsample_nearest_exact1d.vec": FP32,
    "_upsample_nearest_exact2d.vec": FP32, "_upsample_nearest_exact3d.vec": FP32,
    "upsample_linear1d.vec": FP32, "upsample_bilinear2d.vec": FP32,
    "upsample_trilinear3d.vec": FP32, "upsample_bicubic2d.vec": FP32,
}


def _op_key(func) -> str:
    name = func._schema.name.split("::", 1)[1]
    overload = func._overloadname
    return name if overload == "default" else f"{name}.{overload}"


def check_policy_against_torch() -> None:
    """Raise if the op lists differ from the AutocastCUDA kernels registered by this torch."""
    registered = set()
    for name in torch._C._dispatch_get_all_op_names():
        if not name.startswith("aten::"):
            continue
        for line in torch._C._dispatch_dump_table(name).splitlines():
            if line.startswith("AutocastCUDA") and "[kernel]" in line:
                registered.add(name[len("aten::"):])
    ours = set(POLICY) | _BANNED
    # Overloads torch does not have in this version are fine to list; unlisted ones are not.
    unlisted = sorted(registered - ours)
    if unlisted:
        raise RuntimeError(f"CUDA autocast emulation does not know these AutocastCUDA ops of "
                           f"torch {torch.__version__}: {unlisted}")


# --- autocast('cuda') region tracking -------------------------------------------------------------

_RealAutocast = torch.amp.autocast
_STACK: list[tuple[bool, torch.dtype]] = []  # innermost autocast('cuda') region last


class _EmulatedAutocast:
    """Stands in for torch.amp.autocast: 'cuda' regions go on the emulation stack, others to torch."""

    def __init__(self, device_type: str = "cuda", dtype: torch.dtype | None = None,
                 enabled: bool = True, cache_enabled: bool | None = None):
        self.device_type = device_type
        self.real = None if device_type == "cuda" else _RealAutocast(device_type, dtype, enabled,
                                                                       cache_enabled)
        # CUDA autocast's default dtype is float16; a disabled region keeps the outer dtype.
        self.dtype = dtype if dtype is not None else torch.float16
        self.enabled = enabled

    def __enter__(self):
        if self.real is not None:
            return self.real.__enter__()
        _STACK.append((self.enabled, self.dtype))
        return self

    def __exit__(self, *exc):
        if self.real is not None:
            return self.real.__exit__(*exc)
        _STACK.pop()
        return False

    def __call__(self, fn):
        @functools.wraps(fn)
        def wrapped(*args, **kwargs):
            with _EmulatedAutocast(self.device_type, self.dtype, self.enabled):
                return fn(*args, **kwargs)
        return wrapped


def _cuda_amp_autocast(enabled: bool = True, dtype: torch.dtype = torch.float16,
                       cache_enabled: bool = True):
    return _EmulatedAutocast("cuda", dtype, enabled)


def _eligible(x) -> bool:
    return isinstance(x, torch.Tensor) and x.is_floating_point() and x.dtype != torch.float64


def _map_tensors(fn, tree):
    if isinstance(tree, torch.Tensor):
        return fn(tree)
    if isinstance(tree, (list, tuple)):
        return type(tree)(_map_tensors(fn, t) for t in tree)
    return tree


def _cast_args(policy: str, args, kwargs, takes_dtype: bool):
    """args/kwargs as CUDA autocast hands them to an op of this policy (innermost region)."""
    if policy == FP32_OPT_DTYPE:
        if not _eligible(next(iter(_flat_tensors(args)), None)):
            return args, kwargs
        if takes_dtype:
            return args, {**kwargs, "dtype": kwargs.get("dtype") or torch.float32}
    if policy == LOWER:
        to = _STACK[-1][1]
    elif policy in (FP32, FP32_OPT_DTYPE):
        to = torch.float32
    else:  # PROMOTE
        floats = [t.dtype for t in _flat_tensors((args, kwargs)) if _eligible(t)]
        if not floats:
            return args, kwargs
        to = functools.reduce(torch.promote_types, floats)
    cast = lambda t: t.to(to) if _eligible(t) else t  # noqa: E731
    return _map_tensors(cast, args), {k: _map_tensors(cast, v) for k, v in kwargs.items()}


def _autocasting() -> bool:
    return bool(_STACK) and _STACK[-1][0]


class _AutocastCudaMode(TorchDispatchMode):
    """Casts aten ops (as seen below autograd and composite decomposition)."""

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        key = _op_key(func)
        policy = (POLICY.get(key) or _DECOMPOSED.get(key)) if _autocasting() else None
        if policy is not None:
            takes_dtype = any(a.name == "dtype" for a in func._schema.arguments)
            args, kwargs = _cast_args(policy, args, kwargs, takes_dtype)
        return func(*args, **kwargs)


# Composite ops that CUDA autocast casts as a whole. Below autograd they decompose, and the
# decomposition may check dtypes before any op we could cast (conv with fp32 input and bf16
# weight) or pick another kernel (SDPA's math path upcasts), so they are cast at the Python call;
# the ops they run inside are then left alone, as autocast excludes itself for the redispatch.
_COMPOSITE = {"linear", "conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d",
              "conv_transpose3d", "matmul", "einsum", "scaled_dot_product_attention", "layer_norm",
              "group_norm", "rms_norm", "bilinear", "tensordot", "cosine_similarity", "prelu",
              "chain_matmul", "linalg_multi_dot"}


class _AutocastCudaFunctionMode(TorchFunctionMode):
    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = getattr(func, "__name__", "")
        if name not in _COMPOSITE or not _autocasting():
            return func(*args, **kwargs)
        policy = POLICY.get(name) or POLICY[f"{name}.input"]
        args, kwargs = _cast_args(policy, args, kwargs, takes_dtype=False)
        _STACK.append((False, _STACK[-1][1]))
        try:
            return func(*args, **kwargs)
        finally:
            _STACK.pop()


def _flat_tensors(tree):
    if isinstance(tree, torch.Tensor):
        yield tree
    elif isinstance(tree, (list, tuple)):
        for t in tree:
            yield from _flat_tensors(t)
    elif isinstance(tree, dict):
        for t in tree.values():
            yield from _flat_tensors(t)


@contextlib.contextmanager
def _tracked_autocast():
    """torch's autocast entry points replaced by the region-tracking stand-in."""
    saved = (torch.amp.autocast, torch.autocast, torch.amp.autocast_mode.autocast,
             torch.cuda.amp.autocast)
    torch.amp.autocast = torch.autocast = torch.amp.autocast_mode.autocast = _EmulatedAutocast
    torch.cuda.amp.autocast = _cuda_amp_autocast
    try:
        yield
    finally:
        (torch.amp.autocast, torch.autocast, torch.amp.autocast_mode.autocast,
         torch.cuda.amp.autocast) = saved


@contextlib.contextmanager
def cuda_autocast_emulation():
    """Within: autocast('cuda', ...) regions cast CPU tensors as CUDA autocast casts CUDA ones.

    Decorators such as `@amp.autocast('cuda', enabled=False)` are evaluated when the reference
    is imported; `import_reference` tracks autocast already, so they take part too.
    """
    check_policy_against_torch()
    with _tracked_autocast(), _AutocastCudaFunctionMode(), _AutocastCudaMode():
        yield


# --- importing the reference --------------------------------------------------------------------

def sdpa_flash_attention(q, k, v, q_lens=None, k_lens=None, dropout_p=0.0, softmax_scale=None,
                         q_scale=None, causal=False, window_size=(-1, -1), deterministic=False,
                         dtype=torch.bfloat16, version=None):
    """The reference's flash-attn wrapper for its inference conditions, on SDPA.

    q, k, v: [B, L, N, d]. Only full lengths, global windows and no dropout are supported (all
    the reference's generation path uses); anything else raises instead of computing silently.
    """
    if window_size != (-1, -1) and tuple(window_size) != (-1, -1):
        raise NotImplementedError("windowed attention is not emulated")
    for lens, seq in ((q_lens, q.size(1)), (k_lens, k.size(1))):
        if lens is not None and bool((torch.as_tensor(lens) != seq).any()):
            raise NotImplementedError("padded attention lengths are not emulated")
    if dropout_p or q_scale is not None:
        raise NotImplementedError("dropout / q_scale are not emulated")
    out_dtype = q.dtype
    half = lambda x: x if x.dtype in (torch.float16, torch.bfloat16) else x.to(dtype)  # noqa: E731
    q, k, v = half(q), half(k), half(v)
    q, k = q.to(v.dtype), k.to(v.dtype)
    out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
                                         is_causal=causal, scale=softmax_scale)
    return out.transpose(1, 2).type(out_dtype)


class _Unavailable:
    """Anything taken from a stubbed package: importable, unusable."""

    def __init__(self, name):
        self._name = name

    def __getattr__(self, attr):
        return _Unavailable(f"{self._name}.{attr}")

    def __call__(self, *args, **kwargs):
        raise RuntimeError(f"{self._name} belongs to a package stubbed by tests/golden/refenv.py")

    def __mro_entries__(self, bases):  # allow `class X(stubbed.Base)` at import time
        return (object,)


class _StubModule(types.ModuleType):
    def __getattr__(self, attr):
        if attr.startswith("__"):
            raise AttributeError(attr)
        return _Unavailable(f"{self.__name__}.{attr}")


class _StubFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def __init__(self, roots):
        self.roots = set(roots)

    def find_spec(self, fullname, path, target=None):
        if fullname.split(".")[0] in self.roots and _imported_by_reference():
            return importlib.machinery.ModuleSpec(fullname, self, is_package=True)
        return None

    def create_module(self, spec):
        module = _StubModule(spec.name)
        module.__path__ = []
        return module

    def exec_module(self, module):
        if module.__name__ == "omegaconf":  # the engine module loads its yaml at import
            module.OmegaConf = types.SimpleNamespace(load=_load_yaml)


def _imported_by_reference() -> bool:
    """True when the import statement being served is in a reference module (or a stub).

    Libraries probing for optional packages (transformers, diffusers) must keep seeing them as
    absent, so stubs are only handed to the reference's own imports.
    """
    frame = sys._getframe(1)
    while frame is not None:
        name = frame.f_globals.get("__name__", "")
        if not (name.startswith("importlib") or name == __name__):
            return name == "ovi" or name.startswith("ovi.") or isinstance(
                sys.modules.get(name), _StubModule)
        frame = frame.f_back
    return False


def _load_yaml(path):
    import yaml
    with open(path, encoding="utf-8") as f:
        return yaml.safe_load(f)


class Reference:
    """The imported reference: `module(name)` imports (or returns) one of its modules."""

    def __init__(self, root: Path, on_cpu: bool = True):
        self.root, self.on_cpu = root, on_cpu

    def module(self, name: str):
        with _at_root(self.root, self.on_cpu):
            module = importlib.import_module(name)
        if self.on_cpu or not flash_attn_installed():
            _patch_attention()
        return module


def flash_attn_installed() -> bool:
    """Whether the reference can make its own flash-attn calls (on a CUDA machine without
    flash-attn it runs on SDPA, as on the CPU)."""
    return any(importlib.util.find_spec(name) is not None for name in ("flash_attn_interface", "flash_attn"))


@contextlib.contextmanager
def _at_root(root: Path, on_cpu: bool = True):
    cwd = os.getcwd()
    current_device = torch.cuda.current_device
    os.chdir(root)
    if on_cpu:
        torch.cuda.current_device = lambda: "cpu"
    try:
        yield
    finally:
        torch.cuda.current_device = current_device
        os.chdir(cwd)


def _patch_attention():
    for name, module in list(sys.modules.items()):
        if name == "ovi" or name.startswith("ovi."):
            if callable(getattr(module, "flash_attention", None)):
                module.flash_attention = sdpa_flash_attention


@contextlib.contextmanager
def import_reference(path: str | os.PathLike = DEFAULT_REFERENCE, stubs=DEFAULT_STUBS,
                     on_cpu: bool = True):
    """Make the reference checkout at `path` importable (see the module docstring).

    on_cpu=False (a CUDA machine, the benchmark) keeps the reference's own flash-attn calls (SDPA
    where flash-attn is not installed) and `torch.cuda.current_device()`; only the unused imports
    are still stubbed.

    Yields a `Reference`; `ref.module("ovi.modules.fusion")` imports a module of it. On exit the
    reference's modules are unloaded again and sys.path / the import hooks are restored.
    """
    root = Path(path).resolve()
    if not (root / "ovi").is_dir():
        raise FileNotFoundError(f"{root} is not an Ovi checkout (no ovi/ package)")
    missing = [s for s in stubs if importlib.util.find_spec(s) is None]
    finder = _StubFinder(missing)
    sys.meta_path.insert(0, finder)
    sys.path.insert(0, str(root))
    before = set(sys.modules)
    try:
        with _tracked_autocast() if on_cpu else contextlib.nullcontext():
            yield Reference(root, on_cpu)
    finally:
        sys.path.remove(str(root))
        sys.meta_path.remove(finder)
        for name in set(sys.modules) - before:
            if name == "ovi" or name.startswith("ovi.") or name.split(".")[0] in finder.roots:
                del sys.modules[name]
