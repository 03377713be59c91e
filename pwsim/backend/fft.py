"""FFT engines behind :class:`pwsim.backend.Backend`: SciPy's, pyFFTW's (with pruned "stick" band
transforms, planned once per layout), pyFFTW's shared out over host threads, and the array namespace's
own (array_api_strict, CuPy's cuFFT)."""
from __future__ import annotations

import itertools
import math
import os
import sys
import threading
import types
import weakref

import numpy as np

from . import threads as hostthreads

#: numbers the FFT engines: plans cached on a box map are keyed by the engine that owns their arrays
_ENGINE_IDS = itertools.count()
#: FFTW's planner is not thread-safe (executing plans is): every plan is made under this lock
_PLANNER_LOCK = threading.RLock()


class _ScipyFFT:
    def __init__(self, threads):
        import scipy.fft

        self.sp = scipy.fft
        self.threads = threads

    def fftn(self, a):
        return self.sp.fftn(a, axes=(-3, -2, -1), workers=self.threads)

    def ifftn(self, a, normalise=True):
        return self.sp.ifftn(a, axes=(-3, -2, -1), workers=self.threads, norm="backward" if normalise else "forward")

    def rfftn(self, a):
        return self.sp.rfftn(a, axes=(-3, -2, -1), workers=self.threads)

    def irfftn(self, a, grid):
        return self.sp.irfftn(a, s=grid, axes=(-3, -2, -1), workers=self.threads)


class _PyFFTW:
    """FFTW through pyFFTW: plans for one band, built once and executed band by band.

    pyFFTW's interface cache plans (and keeps work arrays for) every batch size it meets; the number
    of active bands changes every eigensolver iteration, so that cache grows by hundreds of MB. Plans
    for a single grid, re-pointed at each band of a batch whose bands are each SIMD-aligned, cost one
    grid of memory and the same time per transform.

    Wavefunction transforms are pruned (:class:`Sticks`): three in-place 1-D passes, the first two
    restricted to the columns and planes the G-sphere occupies."""

    pruned = True

    #: grids at least this large are planned with FFTW_MEASURE, smaller ones with FFTW_ESTIMATE.
    #: On small boxes MEASURE's one-off planning of the dozen pruned plans outweighs its faster
    #: transforms; on large ones it pays (whole-run figures in docs/benchmarks.md). PWSIM_FFTW_EFFORT
    #: overrides (and switches :attr:`MEASURE_AFTER` off: every plan is made with that effort at once).
    MEASURE_FROM = 48**3
    #: the same for the 1-D passes of the pruned band transforms, which run thousands of times per
    #: k-point: FFTW_ESTIMATE's strided passes are up to 2.8x slower there (a 40^3 box: x pass 386
    #: against 137 us, y pass 161 against 61 us), and with the stick count rounded up to
    #: STICK_QUANTUM the k-points of a run share their pass shapes, so measuring costs ~0.1-0.3 s
    #: once per run, not per k-point (and nothing once the wisdom is saved)
    PASS_MEASURE_FROM = 32**3
    #: the stick array of a band has its column count rounded up to a multiple of this (the extra
    #: rows stay zero): k-points whose spheres hold slightly different numbers of columns then have
    #: the same z pass, planned (measured) once
    STICK_QUANTUM = 16
    #: a plan due to be measured (above) is made at once from FFTW's wisdom when an earlier run saved
    #: it, else first with FFTW_ESTIMATE, and measured only once this many transforms of its kind
    #: (grid, precision, direction; summed over the k-points) have run in this process. Measuring a
    #: plan costs about as much as 100-200 of its transforms gain over the estimated one (a 100^3
    #: box, one thread: the 1-D x pass 4.0 ms measured against 5.4 ms estimated, measuring it
    #: 150 ms; the r2c box 3.5 against 4.3 ms, 180 ms; c2r 3.8 against 5.9 ms, 165 ms): a rent-or-buy
    #: rule, under which a short run (a molecule's dozen SCF steps: ~1.4 s of measuring saved) never
    #: pays for plans it has no time to profit from, and a long one pays at most about twice what
    #: measuring at once would have cost, then keeps the wisdom for the next run
    MEASURE_AFTER = 128
    #: grids smaller than this are transformed on one thread whatever ``threads`` says: a 24^3 box
    #: is microseconds of work per pass, and FFTW's threads then spend their time waiting for each
    #: other (docs/parallel.md)
    THREADS_FROM = hostthreads.WHOLE_BOX_THREADS_FROM

    def __init__(self, threads):
        self.pyfftw = _import_pyfftw()
        load_wisdom(self.pyfftw)
        self.threads = threads
        self.uid = next(_ENGINE_IDS)  # plans cached on a box map belong to one engine (its scratch boxes)
        self.plans = {}
        self.estimated = set()  # keys of self.plans made with FFTW_ESTIMATE while due to be measured
        self.uses = {}  # transforms run per kind of plan (:meth:`_count`)
        self.align = self.pyfftw.simd_alignment
        # Every plan is made on views of two scratch boxes per grid and dtype, and re-pointed at them
        # after each use (:meth:`_rest`): otherwise each of the ~20 plans would keep its own box-sized
        # arrays, and the last arrays it ran on, alive (~60 MiB on a 72^3 grid).
        self.scratch = {}
        self.home = {}
        self._potential = None  # (weak reference to a potential, its interleaved copy)

    def _threads(self, grid):
        return self.threads if grid[0] * grid[1] * grid[2] >= self.THREADS_FROM else 1

    def _effort(self, grid, passes=False):
        """FFTW planner effort for whole-box plans of ``grid``, or (passes) the band transforms' 1-D passes."""
        start = self.PASS_MEASURE_FROM if passes else self.MEASURE_FROM
        return os.environ.get("PWSIM_FFTW_EFFORT") or (
            "FFTW_MEASURE" if grid[0] * grid[1] * grid[2] >= start else "FFTW_ESTIMATE")

    def _count(self, kind, transforms) -> bool:
        """Record ``transforms`` more transforms of ``kind``; True once plans of that kind are to be
        measured now (:attr:`MEASURE_AFTER`)."""
        self.uses[kind] = self.uses.get(kind, 0) + transforms
        return self.uses[kind] >= self.MEASURE_AFTER

    def _make(self, key, kind, grid, passes, build):
        """The plan ``key`` of self.plans, made (or, once due, remade measured) by ``build(flags)``.

        Effort: :meth:`_effort`'s. Where that is FFTW_MEASURE and not forced by PWSIM_FFTW_EFFORT,
        the plan comes from the wisdom of earlier runs if it knows the problem (no measuring), else
        it is made with FFTW_ESTIMATE and remade measured once :meth:`_count` says so for ``kind``
        (:attr:`MEASURE_AFTER`); the new wisdom is then saved for the next run."""
        plan = self.plans.get(key)
        due = self.uses.get(kind, 0) >= self.MEASURE_AFTER
        if plan is not None and (key not in self.estimated or not due):
            return plan
        effort = self._effort(grid, passes)
        with _PLANNER_LOCK:  # FFTW's planner is not thread-safe (its execute is)
            self.estimated.discard(key)
            if effort == "FFTW_ESTIMATE" or due or os.environ.get("PWSIM_FFTW_EFFORT"):
                plan = build((effort,))
                if effort != "FFTW_ESTIMATE":
                    save_wisdom(self.pyfftw)
            else:
                try:
                    plan = build((effort, "FFTW_WISDOM_ONLY"))
                except RuntimeError:  # no wisdom for this problem: estimated until it has run long enough
                    plan = build(("FFTW_ESTIMATE",))
                    self.estimated.add(key)
            self.plans[key] = plan
        return plan

    def stick_rows(self, box_map):
        """Rows of a band's stick array: where the passes are measured, the sphere's column count
        rounded up to STICK_QUANTUM (at most the box's n1 n2 columns); else the count itself (estimated
        plans cost nothing to make, and the zero rows would only add work)."""
        n1, n2, _ = box_map.shape
        ncol = box_map.sticks.columns.size
        if self._effort(box_map.shape, passes=True) == "FFTW_ESTIMATE":
            return ncol
        return min(-(-ncol // self.STICK_QUANTUM) * self.STICK_QUANTUM, n1 * n2)

    def _scratch(self, grid, dtype, which, shape):
        """An aligned array of ``shape`` on the shared scratch box ``which`` (0 or 1) of this grid and dtype."""
        key = (tuple(grid), np.dtype(dtype).char, which)
        if key not in self.scratch:
            self.scratch[key] = self.pyfftw.empty_aligned(math.prod(grid), dtype=dtype)
        return self.scratch[key][: math.prod(shape)].reshape(shape)

    def _rest(self, *plans):
        """Re-point plans at their scratch arrays, releasing the arrays they last ran on."""
        for plan in plans:
            plan.update_arrays(*self.home[id(plan)])

    def _plan(self, grid, dtype, inverse, transforms):
        """Complex whole-box plan of ``grid``, about to run ``transforms`` times."""
        kind = ("c2c", grid, np.dtype(dtype).char, inverse)
        self._count(kind, transforms)
        key = (grid, dtype, inverse)
        if key in self.plans and key not in self.estimated:  # (a made plan: no scratch views, no builder)
            return self.plans[key]
        a = self._scratch(grid, dtype, 0, grid)
        b = self._scratch(grid, dtype, 1, grid)
        return self._make(key, kind, grid, False, self._whole_box_build(a, b, grid, inverse))

    def _whole_box_build(self, a, b, grid, inverse):
        """The builder (flags -> plan) of a whole-box transform from ``a`` into ``b`` (kept as the plan's
        home arrays)."""
        def build(flags):
            plan = self.pyfftw.FFTW(
                a, b, axes=(0, 1, 2), direction="FFTW_BACKWARD" if inverse else "FFTW_FORWARD",
                threads=self._threads(grid), flags=flags, normalise_idft=True)
            self.home[id(plan)] = (a, b)
            return plan

        return build

    @staticmethod
    def _key_1d(shape, axis, dtype, inverse, which, offset):
        return ("1d", shape, axis, np.dtype(dtype).char, inverse, which, offset)

    def _plan_1d(self, shape, axis, dtype, inverse, grid, which=0, offset=0):
        """In-place 1-D transforms along ``axis`` of a C-contiguous array of ``shape``, unnormalised,
        planned on (so executed without re-pointing on) the part of scratch box ``which`` that
        starts ``offset`` elements in."""
        key = self._key_1d(shape, axis, dtype, inverse, which, offset)
        kind = ("passes", grid, np.dtype(dtype).char, inverse)
        if key in self.plans and key not in self.estimated:
            return self.plans[key]
        size = int(np.prod(shape))
        a = self._scratch(grid, dtype, which, (offset + size,))[offset:].reshape(shape)
        unaligned = () if a.ctypes.data % self.align == 0 else ("FFTW_UNALIGNED",)

        def build(flags):
            plan = self.pyfftw.FFTW(
                a, a, axes=(axis,), direction="FFTW_BACKWARD" if inverse else "FFTW_FORWARD",
                threads=self._threads(grid), flags=flags + unaligned, normalise_idft=False)
            self.home[id(plan)] = (a, a)
            return plan

        return self._make(key, kind, grid, True, build)

    def _stack(self, nb, shape, dtype):
        """(nb, *shape) array whose rows are each contiguous and SIMD-aligned (so one plan serves all)."""
        n = int(np.prod(shape))
        itemsize = np.dtype(dtype).itemsize
        per = -(-n * itemsize // self.align) * self.align // itemsize
        return self.pyfftw.empty_aligned((nb, per), dtype=dtype)[:, :n].reshape(nb, *shape)

    def _run(self, a, inverse, normalise=True):
        grid = tuple(a.shape[-3:])
        dtype = np.complex64 if a.dtype in (np.complex64, np.float32) else np.complex128
        flat = a.reshape(-1, *grid)
        if flat.dtype == dtype and flat.flags.c_contiguous and flat.ctypes.data % self.align == 0:
            source = flat  # out-of-place complex transforms leave their input intact
        else:
            source = self.pyfftw.empty_aligned(flat.shape, dtype=dtype)
            source[...] = flat
        out = self.pyfftw.empty_aligned(flat.shape, dtype=dtype)
        plan = self._plan(grid, dtype, inverse, flat.shape[0])
        for i in range(flat.shape[0]):
            plan.update_arrays(source[i], out[i])
            plan.execute()
            if inverse and normalise:  # execute() never normalises (pyFFTW does that only in __call__)
                out[i] *= 1.0 / (grid[0] * grid[1] * grid[2])
        self._rest(plan)
        return out.reshape(a.shape[:-3] + grid)

    def fftn(self, a):
        return self._run(a, False)

    def ifftn(self, a, normalise=True):
        return self._run(a, True, normalise)

    # --------------------------------------------------------- real whole-box transforms
    def _real_plan(self, grid, inverse, transforms):
        """r2c (forward) or c2r (inverse, normalised) plan of a float64 box, about to run
        ``transforms`` times, on scratch arrays: the real box on scratch box 0 (viewed as reals),
        the half box on scratch box 1."""
        key = ("real", grid, inverse)
        self._count(key, transforms)
        if key in self.plans and key not in self.estimated:  # (a made plan: no scratch views, no builder)
            return self.plans[key]
        half = grid[:2] + (grid[2] // 2 + 1,)
        real = self._scratch(grid, np.complex128, 0, (math.prod(grid) // 2 + 1,)).view(np.float64)
        real = real[: math.prod(grid)].reshape(grid)
        cplx = self._scratch(grid, np.complex128, 1, half)
        a, b = (cplx, real) if inverse else (real, cplx)
        return self._make(key, key, grid, False, self._whole_box_build(a, b, grid, inverse))

    def rfftn(self, a):
        """Unnormalised r2c transforms of (..., n1, n2, n3) float64 -> (..., n1, n2, n3 // 2 + 1)."""
        grid = tuple(a.shape[-3:])
        flat = np.asarray(a, dtype=np.float64).reshape(-1, *grid)
        plan = self._real_plan(grid, False, flat.shape[0])
        source = self.home[id(plan)][0]
        out = self._stack(flat.shape[0], grid[:2] + (grid[2] // 2 + 1,), np.complex128)
        for i in range(flat.shape[0]):
            source[...] = flat[i]  # aligned, and an r2c plan may not be pointed at any array
            plan.update_arrays(source, out[i])
            plan.execute()
        self._rest(plan)
        return out.reshape(a.shape[:-3] + out.shape[1:])

    def irfftn(self, a, grid):
        """c2r transforms of half boxes (..., n1, n2, n3 // 2 + 1) -> (..., *grid) float64, with 1/N.
        The input is copied first, times 1/N (execute() never normalises): a multi-dimensional c2r
        transform overwrites its input."""
        flat = a.reshape(-1, *a.shape[-3:])
        plan = self._real_plan(grid, True, flat.shape[0])
        source = self.home[id(plan)][0]
        out = self._stack(flat.shape[0], grid, np.float64)
        for i in range(flat.shape[0]):
            np.multiply(flat[i], 1.0 / math.prod(grid), out=source)
            plan.update_arrays(source, out[i])
            plan.execute()
        self._rest(plan)
        return out.reshape(a.shape[:-3] + grid)

    def irfftn_times(self, a, count, factor, grid):
        """c2r transforms of the half box a (n1, n2, n3 // 2 + 1) times factor(i) for i < count ->
        (count, *grid) float64, with 1/N: each product is written straight into the plan's input
        copy, then scaled there (the bits of :meth:`irfftn` of the product)."""
        plan = self._real_plan(grid, True, count)
        source = self.home[id(plan)][0]
        out = self._stack(count, grid, np.float64)
        for i in range(count):
            np.multiply(factor(i), a, out=source)
            source *= 1.0 / math.prod(grid)
            plan.update_arrays(source, out[i])
            plan.execute()
        self._rest(plan)
        return out

    # --------------------------------------------------------- pruned transforms
    def _passes(self, box_map, dtype, inverse, transforms):
        """The plans of one pruned transform, about to run ``transforms`` times: (z on the sticks, y
        on each slab, x on the box); remade once estimated ones are due to be measured (:meth:`_make`)."""
        key = (self.uid, np.dtype(dtype).char, inverse)
        cache = box_map.sticks.plans
        due = self._count(("passes", box_map.shape, np.dtype(dtype).char, inverse), transforms)
        entry = cache.get(key)
        if entry is None or (due and self._stale(entry)):
            entry = cache[key] = self._make_passes(box_map, dtype, inverse)
        return entry[0]

    def _stale(self, entry) -> bool:
        """Whether a layout's pass plans include one estimated or since remade (measured)."""
        (z, ys, x), keys = entry
        plans = [z, *(plan for plan, _, _ in ys), x]
        return any(k in self.estimated or self.plans.get(k) is not p for k, p in zip(keys, plans))

    def _make_passes(self, box_map, dtype, inverse):
        """Each pass planned on the very arrays :meth:`_buffers` hands out: the stick array on
        scratch box 1, every slab and the whole box on scratch box 0. Executed there, a plan needs
        no re-pointing (pyFFTW's update_arrays checks cost ~1 us a call, 8 calls a band).
        Returns ((z, [(y, start, stop), ...], x), the plans' keys in self.plans in that order)."""
        n1, n2, n3 = box_map.shape
        sticks = box_map.sticks
        grid = box_map.shape
        layouts = [((self.stick_rows(box_map), n3), 1, 1, 0)]  # (shape, axis, scratch box, offset)
        layouts += [((stop - start, n2, n3), 1, 0, start * n2 * n3) for start, stop in sticks.slabs]
        layouts.append(((n1, n2, n3), 0, 0, 0))
        plans = [self._plan_1d(shape, axis, dtype, inverse, grid, which, offset)
                 for shape, axis, which, offset in layouts]
        keys = [self._key_1d(shape, axis, dtype, inverse, which, offset) for shape, axis, which, offset in layouts]
        ys = [(plan, start, stop) for plan, (start, stop) in zip(plans[1:-1], sticks.slabs)]
        return (plans[0], ys, plans[-1]), keys

    @staticmethod
    def _execute(plan, array):
        plan.update_arrays(array, array)
        plan.execute()

    def _inverse(self, plans, sticks, stick, box, home=True):
        """stick (ncol, n3) holding a band's coefficients -> box (n1, n2, n3), in place, unnormalised.
        home: box is the scratch box the plans were made on (else they are re-pointed at it)."""
        z, ys, x = plans
        n1, n2, n3 = box.shape
        z.execute()  # the stick array is always the scratch one
        box.fill(0)
        box.reshape(n1 * n2, n3)[sticks.columns] = stick
        if home:
            for plan, _, _ in ys:
                plan.execute()
            x.execute()
            return
        for plan, start, stop in ys:
            self._execute(plan, box[start:stop])
        self._execute(x, box)

    def _forward(self, plans, sticks, box, stick):
        """box (n1, n2, n3), the plans' scratch box -> stick (ncol, n3) at the sphere's columns;
        overwrites box."""
        z, ys, x = plans
        n1, n2, n3 = box.shape
        x.execute()
        for plan, _, _ in ys:
            plan.execute()
        box.reshape(n1 * n2, n3).take(sticks.columns, axis=0, out=stick)
        z.execute()

    def _interleaved(self, potential, dtype):
        """The real potential (n1, n2, n3) with every value twice, (n1, n2, 2 n3) of the real dtype
        matching complex ``dtype``: a complex box viewed as reals is then multiplied by it in one
        contiguous real product, with no complex-by-real type promotion. Kept for the
        last potential seen (one grid): an eigensolver applies the same one hundreds of times."""
        real = np.float32 if dtype == np.complex64 else np.float64
        cached = self._potential
        if cached is not None and cached[0]() is potential and cached[1].dtype == real:
            return cached[1]
        pair = np.empty(potential.shape[:-1] + (potential.shape[-1], 2), dtype=real)
        pair[..., 0] = potential
        pair[..., 1] = potential
        pair = pair.reshape(potential.shape[:-1] + (2 * potential.shape[-1],))
        self._potential = (weakref.ref(potential), pair)
        return pair

    def _buffers(self, box_map, dtype):
        """A stick array and a box for one band, on the scratch boxes (the plans' own arrays);
        kept with the layout's plans (every eigensolver iteration asks again). The stick array is
        returned as its sphere's columns (ncol, n3) and, flat, with the zero rows that round it up to
        :meth:`stick_rows` (the z pass runs on those too)."""
        key = (self.uid, np.dtype(dtype).char, "buffers")
        cache = box_map.sticks.plans
        if key not in cache:
            sticks = box_map.sticks
            padded = self._scratch(box_map.shape, dtype, 1, (self.stick_rows(box_map), box_map.shape[2]))
            box = self._scratch(box_map.shape, dtype, 0, box_map.shape)
            cache[key] = padded[: sticks.columns.size], padded.reshape(-1), box
        return cache[key]

    def _load(self, flat_stick, index, c, j, pair):
        """Put row j (and, for pairs, i times row j + 1) into the zeroed stick array."""
        flat_stick.fill(0)
        flat_stick[index] = c[j]
        if pair and j + 1 < c.shape[0]:
            flat_stick[index] += 1j * c[j + 1]

    def sphere_to_grid(self, coeffs, box_map, potential=None, minus_index=None):
        """Unnormalised inverse transform of rows (..., npw) -> (..., n1, n2, n3). With ``potential``,
        returns grid_to_sphere(potential * that) instead, one band at a time; with ``minus_index``
        as well, the rows are real functions and go two per transform."""
        lead = coeffs.shape[:-1]
        c = coeffs.reshape(-1, coeffs.shape[-1])
        nb, npw = c.shape
        dtype = np.complex64 if c.dtype == np.complex64 else np.complex128
        sticks = box_map.sticks
        pair = minus_index is not None and potential is not None
        transforms = -(-nb // 2) if pair else nb
        inverse = self._passes(box_map, dtype, True, transforms)
        stick, flat_stick, box = self._buffers(box_map, dtype)
        if potential is None:
            out = self._stack(nb, box_map.shape, dtype)
            for j in range(nb):
                self._load(flat_stick, sticks.index, c, j, False)
                self._inverse(inverse, sticks, stick, out[j], home=False)
            self._rest(inverse[2], *(plan for plan, _, _ in inverse[1]))
            return out.reshape(*lead, *box_map.shape)
        forward = self._passes(box_map, dtype, False, transforms)
        result = np.empty((nb, npw), dtype=dtype)
        f = np.empty(npw, dtype=dtype)
        v_pair = self._interleaved(potential, dtype)
        box_real = box.view(v_pair.dtype)  # (n1, n2, 2 n3): real and imaginary parts side by side
        index = sticks.index
        for j in range(0, nb, 2 if pair else 1):
            self._load(flat_stick, index, c, j, pair)
            self._inverse(inverse, sticks, stick, box)
            box_real *= v_pair
            self._forward(forward, sticks, box, stick)
            if not pair:
                flat_stick.take(index, out=result[j])
                continue
            flat_stick.take(index, out=f)
            f_minus = np.conj(f[minus_index])
            result[j] = 0.5 * (f + f_minus)
            if j + 1 < nb:
                result[j + 1] = -0.5j * (f - f_minus)
        return result.reshape(*lead, npw)

    def density(self, coeffs, weights, box_map, real):
        """sum_n w_n |psi_n(r)|^2 (unnormalised transforms), accumulated band by band in float64."""
        c = coeffs
        nb = c.shape[0]
        dtype = np.complex64 if c.dtype == np.complex64 else np.complex128
        sticks = box_map.sticks
        inverse = self._passes(box_map, dtype, True, -(-nb // 2) if real else nb)
        stick, flat_stick, box = self._buffers(box_map, dtype)
        # the box viewed as reals, (n1, n2, 2 n3): squares of real and imaginary parts side by side,
        # accumulated so in float64 (contiguous passes, no strided real/imag views) and added at the end
        n1, n2, n3 = box_map.shape
        parts = box.view(np.float32 if dtype == np.complex64 else np.float64)
        acc = np.zeros((n1, n2, 2 * n3))
        square = np.empty((n1, n2, 2 * n3))
        pair_weights = np.empty(2)
        for j in range(0, nb, 2 if real else 1):
            self._load(flat_stick, sticks.index, c, j, real)
            self._inverse(inverse, sticks, stick, box)
            np.multiply(parts, parts, out=square)
            if real:  # row j in the real part, row j + 1 in the imaginary part
                pair_weights[0] = weights[j]
                pair_weights[1] = weights[j + 1] if j + 1 < nb else 0.0
                square.reshape(-1, 2).__imul__(pair_weights)
            else:
                square *= weights[j]
            acc += square
        return acc[..., 0::2] + acc[..., 1::2]

    def grid_to_sphere(self, grid, box_map):
        """Unnormalised forward transform (..., n1, n2, n3) -> (..., npw) at the sphere's G."""
        n1, n2, n3 = box_map.shape
        lead = grid.shape[:-3]
        g = grid.reshape(-1, n1, n2, n3)
        dtype = np.complex64 if g.dtype in (np.complex64, np.float32) else np.complex128
        sticks = box_map.sticks
        z, ys, x = self._passes(box_map, dtype, False, g.shape[0])
        stick, flat_stick, box = self._buffers(box_map, dtype)
        result = np.empty((g.shape[0], sticks.index.size), dtype=dtype)
        for b in range(g.shape[0]):
            box[...] = g[b]
            self._forward((z, ys, x), sticks, box, stick)
            flat_stick.take(sticks.index, out=result[b])
        return result.reshape(*lead, sticks.index.size)


class _SharedFFTW:
    """Pruned band transforms shared out over host threads (:mod:`pwsim.hostthreads`).

    Each thread has its own single-threaded :class:`_PyFFTW` engine, so its own plans and scratch
    boxes: a pyFFTW plan object holds the arrays it runs on, and two threads cannot use one at once.
    Batches too small to share run on the first thread's engine (no second set of pruned plans to
    make: FFTW_MEASURE planning of a large set is costly); full-box transforms (potentials,
    densities) go to ``whole``, an engine that uses FFTW's own threads on large grids."""

    pruned = True

    def __init__(self, threads):
        self.threads = threads
        self.whole = _PyFFTW(threads)
        self.slots = [_PyFFTW(1) for _ in range(threads)]

    def _engine(self):
        """FFTW's own threads for whole boxes, except on a thread running a share (its own engine)."""
        return self.slots[hostthreads.slot()] if hostthreads.inside_share() else self.whole

    def fftn(self, a):
        return self._engine().fftn(a)

    def ifftn(self, a, normalise=True):
        return self._engine().ifftn(a, normalise)

    def rfftn(self, a):
        return self._engine().rfftn(a)

    def irfftn(self, a, grid):
        return self._engine().irfftn(a, grid)

    def irfftn_times(self, a, count, factor, grid):
        return self._engine().irfftn_times(a, count, factor, grid)

    def grid_to_sphere(self, grid, box_map):
        return self.slots[hostthreads.slot()].grid_to_sphere(grid, box_map)

    def _ranges(self, nbands, even, box_map):
        points = box_map.shape[0] * box_map.shape[1] * box_map.shape[2]
        min_rows = max(hostthreads.MIN_BANDS_PER_THREAD, -(-hostthreads.MIN_SHARED_FFT_POINTS // points))
        return hostthreads.shares(nbands, self.threads, even=even, min_rows=min_rows)

    def sphere_to_grid(self, coeffs, box_map, potential=None, minus_index=None):
        c = coeffs.reshape(-1, coeffs.shape[-1])
        ranges = self._ranges(c.shape[0], minus_index is not None, box_map)
        if potential is None or len(ranges) == 1 or hostthreads.inside_share():
            # the bare transform returns whole boxes: not shared; inside a share: this thread's engine
            return self.slots[hostthreads.slot()].sphere_to_grid(coeffs, box_map, potential, minus_index)

        def share(i, a, b):
            return self.slots[i].sphere_to_grid(c[a:b], box_map, potential, minus_index)

        parts = hostthreads.run_shares(self.threads, share, ranges)
        return np.concatenate(parts, axis=0).reshape(coeffs.shape)

    def density(self, coeffs, weights, box_map, real):
        ranges = self._ranges(coeffs.shape[0], real, box_map)
        if len(ranges) == 1 or hostthreads.inside_share():
            return self.slots[hostthreads.slot()].density(coeffs, weights, box_map, real)

        def share(i, a, b):
            return self.slots[i].density(coeffs[a:b], weights[a:b], box_map, real)

        parts = hostthreads.run_shares(self.threads, share, ranges)
        rho = parts[0]
        for part in parts[1:]:  # in share order: the same sum on every run with this thread count
            rho += part
        return rho


class _NamespaceFFT:
    """FFT through the namespace's own fft extension (array_api_strict, CuPy's cuFFT)."""

    def __init__(self, xp):
        self.xp = xp

    def _complex(self, a):
        xp = self.xp
        if xp.isdtype(a.dtype, "complex floating"):
            return a
        return xp.astype(a, xp.complex64 if a.dtype == xp.float32 else xp.complex128)

    def fftn(self, a):
        return self.xp.fft.fftn(self._complex(a), axes=(-3, -2, -1))

    def ifftn(self, a, normalise=True):
        return self.xp.fft.ifftn(self._complex(a), axes=(-3, -2, -1), norm="backward" if normalise else "forward")

    def rfftn(self, a):
        return self.xp.fft.rfftn(a, axes=(-3, -2, -1))

    def irfftn(self, a, grid):
        return self.xp.fft.irfftn(a, s=grid, axes=(-3, -2, -1))


# ------------------------------------------------------------------ FFTW wisdom
#: PWSIM_FFTW_WISDOM: a file to keep FFTW's wisdom in instead of the user's cache directory, or
#: "off" to neither read nor write one
WISDOM_ENV = "PWSIM_FFTW_WISDOM"
_WISDOM_FORMAT = "pwsim-fftw-wisdom-1"
_wisdom_state = {"loaded": False}
#: a wisdom file larger than this (plans of many past layouts) is not read, and so starts afresh
_WISDOM_MAX_BYTES = 8 << 20


def wisdom_path():
    """The file FFTW's wisdom is kept in: $PWSIM_FFTW_WISDOM, else
    $XDG_CACHE_HOME/pwsim (~/.cache/pwsim) / fftw-wisdom-<machine key>.json; None when switched off.
    Wisdom is only valid on the processor and FFTW it was measured with, hence the key."""
    setting = os.environ.get(WISDOM_ENV, "").strip()
    if setting.lower() in ("off", "0", "no", "false", "none"):
        return None
    if setting:
        return os.path.expanduser(setting)
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(cache, "pwsim", f"fftw-wisdom-{_machine_key()}.json")


def _machine_key() -> str:
    """A short hash of what FFTW's plans depend on: processor model and features, pyFFTW's version."""
    import platform

    from ..digest import sha256_hex

    cpu = ""
    try:
        with open("/proc/cpuinfo") as f:
            cpu = "".join(line for line in f if line.startswith(("model name", "flags", "Features")))[:20000]
    except OSError:
        pass
    # (not platform.processor(): on Linux it runs "uname -p" in a subprocess)
    text = "|".join((platform.machine(), cpu, _pyfftw_version()))
    return sha256_hex(text.encode())[:16]


def _pyfftw_version() -> str:
    module = sys.modules.get("pyfftw")
    return str(getattr(module, "__version__", ""))


def load_wisdom(pyfftw) -> bool:
    """Give FFTW the wisdom of earlier runs, once per process: plans with FFTW_MEASURE of the same
    transforms are then made at once instead of measured again (~1 s for a 100^3 box and its
    pruned passes). A missing, unreadable or corrupt file is ignored (the plans are measured).
    Returns whether wisdom was imported."""
    if _wisdom_state["loaded"]:
        return False
    _wisdom_state["loaded"] = True
    import json  # (here: a plain run's start-up does not need them otherwise)

    path = wisdom_path()
    if path is None:
        return False
    try:
        if os.path.getsize(path) > _WISDOM_MAX_BYTES:
            return False  # this run's wisdom replaces it
        with open(path, encoding="ascii") as f:
            data = json.load(f)
        if data.get("format") != _WISDOM_FORMAT:
            return False
        imported = any(pyfftw.import_wisdom(tuple(w.encode("ascii") for w in data["fftw"])))
        _wisdom_state["known"] = pyfftw.export_wisdom()
        return imported
    except Exception:  # noqa: BLE001 -- a cache: whatever is wrong with it, plan afresh
        return False


def save_wisdom(pyfftw) -> bool:
    """Write FFTW's wisdom (what this process and the file it loaded know) to :func:`wisdom_path`,
    atomically: a temporary file in the same directory renamed over the old one, so a reader (another
    rank, another run) sees the old file or the new one, never a part. Failing to write (read-only
    home, full disk) is ignored: the wisdom only saves time. Returns whether the file was written."""
    path = wisdom_path()
    if path is None:
        return False
    import json
    import tempfile

    tmp = None
    try:
        wisdom = pyfftw.export_wisdom()
        if wisdom == _wisdom_state.get("known"):
            return False  # nothing new since it was read or last written
        text = json.dumps({"format": _WISDOM_FORMAT, "fftw": [w.decode("ascii") for w in wisdom]})
        folder = os.path.dirname(path) or "."
        os.makedirs(folder, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", dir=folder, prefix=".fftw-wisdom-", suffix=".part", delete=False,
                                         encoding="ascii") as f:
            tmp = f.name
            f.write(text)
        os.replace(tmp, path)
        _wisdom_state["known"] = wisdom
        return True
    except Exception:  # noqa: BLE001 -- a cache: a failed write costs the next run its planning, nothing else
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass
        return False


def _import_pyfftw():
    """``import pyfftw`` without its optional interfaces (SciPy's, NumPy's) and builders, nor multiprocessing.

    pyFFTW's package import also builds drop-in replacements for ``scipy.fftpack`` and
    ``scipy.fft``, importing both (a large part of a small run's start-up). pwsim uses only
    ``pyfftw.FFTW``, so while pyFFTW is first imported ``scipy.fftpack`` is made unimportable
    (pyFFTW then skips those interfaces) and put back right after. Its ``config`` module imports
    ``multiprocessing`` (with socket, selectors, pickle's reducers: ~0.4 MiB and ~3 ms) for one call,
    ``cpu_count()`` when PYFFTW_NUM_THREADS asks for every core: a stand-in holding ``os.cpu_count``
    answers it while pyFFTW is imported. If SciPy's FFTs are already loaded, or pyFFTW is, nothing is
    changed; multiprocessing is left alone if it is loaded."""
    if "pyfftw" in sys.modules or "scipy.fftpack" in sys.modules:
        import pyfftw

        return pyfftw
    stand_ins = {"scipy.fftpack": None}  # "import scipy.fftpack" raises ImportError while this is set
    if "multiprocessing" not in sys.modules:
        multiprocessing = types.ModuleType("multiprocessing")
        multiprocessing.cpu_count = lambda: os.cpu_count() or 1
        stand_ins["multiprocessing"] = multiprocessing
    # its helper packages (builders, and interfaces with numpy.fft: ~0.8 MiB), which pwsim does not
    # use, are stand-ins too while the package imports; taken out after, they import for real on demand
    builders = types.ModuleType("pyfftw.builders")
    builders.builders = None  # (the package deletes this attribute)
    stand_ins.update({"pyfftw.builders": builders, "pyfftw.interfaces": types.ModuleType("pyfftw.interfaces")})
    from ..stand_ins import import_with_stand_ins

    return import_with_stand_ins("pyfftw", stand_ins)


def fft_library_name() -> str:
    try:
        _import_pyfftw()
        return "pyfftw"
    except ImportError:
        return "scipy.fft"
