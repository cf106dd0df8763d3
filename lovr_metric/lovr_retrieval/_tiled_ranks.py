"""The tiled pass of the retrieval core: exact stable ranks of every relevant pair in both directions, without
materialising the score matrix (part of the metric Space: plain torch, nothing of the toolkit).

The score matrix is cut into tiles of a chunk of texts x a range of videos, each one matrix product. A relevant
item's rank is that of a stable sort by descending score (a tie goes to the item earlier in the gallery), counted
exactly as `1 + #(scores > own score) + #(earlier items with score == own score)`. Counts add up across tiles: a
text's videos ahead are summed over the video ranges, a video's texts ahead over the text chunks. Each tile is
counted in slices that stay in the CPU's L2 cache, in one ">=" pass per direction: against the own score where the
slice lies before the own item, against the next float up (the same as ">" the own score) where it lies after.
Only rows holding their own item split: a ">" count there, whose rare extra ties are resolved row by row with the
tie rule.

Exactness: a score is the value its tile's product computes. Every pair's own score (the threshold) is needed in
tiles before its own tile is reached; it is first taken from a small product of the same text rows against the
relevant videos only (bitwise equal on the BLAS libraries we tried), then checked against its tile's value; any
pair where they differ is recounted in a second pass with the tile's value (the same tiles, hence the same
numbers). The result therefore equals a stable argsort of the tile-computed matrix, and a naive full-matrix
argsort wherever the BLAS gives the same numbers for a score whichever product computes it (tests/metric checks
both).

In the order of this file: the tile shapes (`TileShape`, per device), `pair_ranks` (the pair scores, a pass, the
recount), the tiling (`_Tiling`) and the pairs indexed for a pass (`_Pairs`: their rows side, columns side and own
scores), and the pass (`_scan`, `_TileCounter`: tile, slice, `_count`, `_split`).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass

import torch

from ._tiled_top import TOP_MARGIN, RunningTop, exact_top


@dataclass(frozen=True)
class TileShape:
    """How the score matrix is cut on one kind of device.

    Args:
        block_bytes (`int`): memory budget of one tile of scores; it sets the texts per tile (`chunk_size`).
        videos (`int`, *optional*): videos per tile; `None` takes all of them.
        count_rows (`int`, *optional*): texts of a tile counted at a time; `None` counts the whole tile at once.
    """

    block_bytes: int
    videos: int | None = None
    count_rows: int | None = None


# CPU: products of 1024 texts x 2048 videos (8 MiB of scores) ran fastest here (few re-reads of the gallery, BLAS
# packing amortised; 2048 x 1024, 512 x 2048 and 100-text row blocks were slower), and are counted in slices of
# 256 texts (2 MiB) that a core's L2 cache mostly holds while they are compared and summed; shapes measured side
# by side at 16,384 x 40,804.
CPU_TILES = TileShape(block_bytes=8 * 2**20, videos=2048, count_rows=256)
# A GPU takes whole rows of videos in large blocks and counts them at once.
GPU_TILES = TileShape(block_bytes=512 * 2**20)
# Rows per block of the pair-score product that precedes the pass: few, cheap products.
GUESS_ROWS = 256


def tile_shape(device: torch.device) -> TileShape:
    """The tiles used on `device` unless told otherwise: `CPU_TILES` on CPU, `GPU_TILES` elsewhere."""
    return CPU_TILES if device.type == "cpu" else GPU_TILES


def pair_ranks(
    texts,
    videos,
    pair_text,
    pair_video,
    chunk_size: int,
    tile_videos: int | None = None,
    count_rows: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """1-based stable ranks of every relevant (text, video) pair: of the video among all videos for the text,
    and of the text among all texts for the video. `texts`, `videos` are normalised; pairs are sorted by text.
    Tiles hold `chunk_size` texts x `tile_videos` videos, counted `count_rows` texts at a time (by default the
    device's `tile_shape`)."""
    ranked = rank_pass(texts, videos, pair_text, pair_video, chunk_size, tile_videos, count_rows)
    return ranked.text_ranks, ranked.video_ranks


@dataclass(frozen=True)
class PassResult:
    """What one pass gives: the pair ranks of `pair_ranks`, and, when asked for, the top items of every text
    (`text_top`, video rows) and of every video (`video_top`, text rows), best first (`_tiled_top`)."""

    text_ranks: torch.Tensor
    video_ranks: torch.Tensor
    text_top: torch.Tensor | None = None
    video_top: torch.Tensor | None = None


def rank_pass(
    texts,
    videos,
    pair_text,
    pair_video,
    chunk_size: int,
    tile_videos: int | None = None,
    count_rows: int | None = None,
    top: int = 0,
) -> PassResult:
    """`pair_ranks`, and with `top > 0` the `top` best items of every text and of every video, kept by the same
    pass over the tiles (`_tiled_top.exact_top` gives their exact order)."""
    shape = tile_shape(videos.device)
    if tile_videos is None:
        tile_videos = shape.videos or videos.shape[0]
    count_rows = min(chunk_size, count_rows or shape.count_rows or chunk_size)
    tiling = _Tiling(texts.shape[0], videos.shape[0], chunk_size, min(tile_videos, videos.shape[0]), count_rows)
    # On CPU, threads scan whole text chunks with single-threaded ops: the small counting ops that follow each
    # product then never wait on a thread-pool barrier, which costs more than the ops themselves.
    workers = torch.get_num_threads() if texts.device.type == "cpu" else 1
    with _single_threaded_ops() if workers > 1 else nullcontext(), _full_precision_matmul():
        guess = _pair_scores(texts, videos, pair_text, pair_video, chunk_size, workers)
        pairs = _Pairs.index(pair_text, pair_video, guess, tiling)
        keep = (min(top + TOP_MARGIN, videos.shape[0]), min(top + TOP_MARGIN, texts.shape[0])) if top else None
        counted = _scan(texts, videos, pairs, workers, keep)
        text_ahead, video_ahead, exact = counted.text_ahead, counted.video_ahead, counted.exact
        # Pairs counted against a score their tile did not compute: recount them against the tile's.
        stale = torch.nonzero(exact != guess).flatten()
        if stale.numel():
            pairs = _Pairs.index(pair_text[stale], pair_video[stale], exact[stale], tiling)
            recounted = _scan(texts, videos, pairs, workers)
            text_ahead[stale], video_ahead[stale] = recounted.text_ahead, recounted.video_ahead
        text_top = video_top = None
        if top:
            with ThreadPoolExecutor(min(workers, 2), initializer=torch.set_num_threads, initargs=(1,)) as pool:
                texts_done = pool.submit(exact_top, counted.text_top, texts, videos, top)
                video_top = exact_top(counted.video_top, videos, texts, top)
                text_top = texts_done.result()
    return PassResult(text_ahead.long() + 1, video_ahead.long() + 1, text_top, video_top)


def _pair_scores(texts, videos, pair_text, pair_video, chunk_size: int, workers: int = 1) -> torch.Tensor:
    """Each pair's score from a product of its text rows against the relevant videos only: the value its tile
    will compute, as far as the BLAS gives the same number whichever product holds it (`pair_ranks` checks).
    Blocks of texts are split over `workers` threads as the pass splits its chunks (at LoVR's scale the products
    took 0.5 s on one core)."""
    chunk_size = max(chunk_size, GUESS_ROWS)
    scores = torch.empty(pair_text.shape[0], dtype=texts.dtype, device=texts.device)
    starts = torch.arange(0, texts.shape[0] + chunk_size, chunk_size, device=texts.device)
    bounds = torch.searchsorted(pair_text, starts).tolist()

    def block(i: int, start: int) -> None:
        lo, hi = bounds[i], bounds[i + 1]
        columns, position = torch.unique(pair_video[lo:hi], return_inverse=True)
        products = texts[start : start + chunk_size] @ videos[columns].T
        scores[lo:hi] = products[pair_text[lo:hi] - start, position]

    blocks = list(enumerate(starts[:-1].tolist()))
    if workers == 1 or len(blocks) == 1:
        for i, start in blocks:
            block(i, start)
    else:
        with ThreadPoolExecutor(workers, initializer=torch.set_num_threads, initargs=(1,)) as pool:
            list(pool.map(lambda part: block(*part), blocks))
    return scores


@dataclass(frozen=True)
class _Tiling:
    """The score matrix cut into tiles of `rows` texts x `columns` videos, in a fixed order: the same tile is
    always the same product, so a recount sees the very numbers the first pass saw. Tile (i, j) is text chunk i
    against video range j, number `i * len(tile_starts) + j`. Each tile is counted in slices of `count_rows`
    texts, numbered through the whole pass."""

    num_texts: int
    num_videos: int
    rows: int
    columns: int
    count_rows: int

    @property
    def chunk_starts(self) -> list[int]:
        return list(range(0, self.num_texts, self.rows))

    @property
    def tile_starts(self) -> list[int]:
        return list(range(0, self.num_videos, self.columns))

    @property
    def slices_per_chunk(self) -> int:
        return -(-self.rows // self.count_rows)

    @property
    def slice_starts(self) -> list[int]:
        slices = range(0, self.slices_per_chunk * self.count_rows, self.count_rows)
        return [start + top for start in self.chunk_starts for top in slices if start + top < self.num_texts]


@dataclass(frozen=True)
class _Pairs:
    """The relevant pairs with their thresholds, indexed for a pass over `tiling`: as the rows count them (text
    order, the order given), as the columns count them (video order: `by_video` of the given order), and by the
    tile that computes each own score."""

    tiling: _Tiling
    thresholds: torch.Tensor
    rows: _Side
    columns: _Side
    by_video: torch.Tensor
    own: _OwnScores

    @classmethod
    def index(cls, text, video, thresholds, tiling: _Tiling) -> _Pairs:
        """Index the pairs `(text[n], video[n])` (sorted by text) whose own scores are `thresholds`."""
        above = _next_up(thresholds)
        rows = _Side(
            query=text,
            own=_OwnItems(video, thresholds, above),
            bounds=_bounds(text, tiling.slice_starts + [tiling.num_texts]),
            in_place=_one_per_query(text, tiling.num_texts),
        )
        by_video = torch.argsort(video, stable=True)
        columns = _Side(
            query=video[by_video],
            own=_OwnItems(text[by_video], thresholds[by_video], above[by_video]),
            bounds=_bounds(video[by_video], tiling.tile_starts + [tiling.num_videos]),
            in_place=_one_per_query(video, tiling.num_videos),
        )
        return cls(tiling, thresholds, rows, columns, by_video, _own_scores(text, video, tiling))


@dataclass(frozen=True)
class _Side:
    """The pairs as one direction counts them, sorted by query: by text for text -> video (a tile's rows), by
    video for video -> text (its columns).

    `query` is each pair's row (column) in the score matrix; pairs `bounds[n]:bounds[n + 1]` have their query in
    slice n (in tile column n). `in_place`: one pair per query, in order, so a block is counted as it lies,
    without gathering its rows (columns)."""

    query: torch.Tensor
    own: _OwnItems
    bounds: list[int]
    in_place: bool


@dataclass(frozen=True)
class _OwnItems:
    """Per pair, in the order of one side: its own item (the index among the items ranked), its own score, and
    the next float up (`_next_up`)."""

    item: torch.Tensor
    score: torch.Tensor
    above: torch.Tensor

    def part(self, lo: int, hi: int) -> _OwnItems:
        return _OwnItems(self.item[lo:hi], self.score[lo:hi], self.above[lo:hi])


@dataclass(frozen=True)
class _OwnScores:
    """Where the tiles compute each pair's own score: pairs in tile order (`order`), tile n's pairs at
    `bounds[n]:bounds[n + 1]`, each at `position` in its tile's flattened scores."""

    order: torch.Tensor
    bounds: list[int]
    position: torch.Tensor


def _one_per_query(query: torch.Tensor, num_queries: int) -> bool:
    """Whether `query` is 0, 1, ..., num_queries - 1: one pair per query, in order."""
    return query.shape[0] == num_queries and torch.equal(query, torch.arange(num_queries, device=query.device))


def _own_scores(text, video, tiling: _Tiling) -> _OwnScores:
    """Which tile computes each pair's score, and where in it."""
    num_tiles = len(tiling.tile_starts)
    tile_of = (text // tiling.rows) * num_tiles + video // tiling.columns
    order = torch.argsort(tile_of, stable=True)
    bounds = _bounds(tile_of[order], list(range(len(tiling.chunk_starts) * num_tiles + 1)))
    # Position of each pair's score inside its tile, flattened (the last tile column may be narrower).
    width = (tiling.num_videos - video // tiling.columns * tiling.columns).clamp(max=tiling.columns)
    position = ((text % tiling.rows) * width + video % tiling.columns)[order]
    return _OwnScores(order, bounds, position)


def _next_up(thresholds: torch.Tensor) -> torch.Tensor:
    """The least float above each threshold, so that `>= _next_up(s)` counts exactly `> s` (inputs are finite;
    -0.0 and +0.0 both give the least denormal)."""
    above = torch.nextafter(thresholds, torch.tensor(float("inf"), dtype=thresholds.dtype, device=thresholds.device))
    # With denormals flushed (`torch.set_flush_denormal`), they compare as zero: the least normal float is next.
    tiny = torch.finfo(thresholds.dtype).tiny
    return torch.where(above > thresholds, above, torch.full_like(above, tiny))


def _bounds(sorted_values: torch.Tensor, starts: list[int]) -> list[int]:
    return torch.searchsorted(sorted_values, torch.tensor(starts, device=sorted_values.device)).tolist()


@dataclass
class _Counted:
    """One pass's counts, per pair: the videos ahead of its video for its text, the texts ahead of its text for
    its video, and its score as its tile computed it; with the top items asked for, what each text and each video
    kept (`RunningTop`)."""

    text_ahead: torch.Tensor
    video_ahead: torch.Tensor
    exact: torch.Tensor
    text_top: RunningTop | None = None
    video_top: RunningTop | None = None


def _scan(texts, videos, pairs: _Pairs, workers: int, keep: tuple[int, int] | None = None) -> _Counted:
    """One pass over the tiles, text chunks split over `workers` threads, counting every pair against its
    threshold; with `keep` = (per text, per video), each text's and each video's best items are kept too."""
    scan = _TileCounter(texts, videos, pairs, keep)
    chunks = range(len(pairs.tiling.chunk_starts))
    if workers == 1 or len(chunks) == 1:
        done = [scan.chunks(chunks)]
    else:
        # OpenMP's and MKL's thread counts are per thread: a pool thread starts at the default, and a BLAS free to
        # split a product over threads rounds some scores differently from call to call (ranks moved by one).
        with ThreadPoolExecutor(workers, initializer=torch.set_num_threads, initargs=(1,)) as pool:
            done = list(pool.map(scan.chunks, [chunks[i::workers] for i in range(workers)]))
    by_video, exact = torch.empty_like(scan.text_counts), torch.empty_like(scan.exact)
    by_video[pairs.by_video], exact[pairs.own.order] = sum(work.video_counts for work in done), scan.exact
    counted = _Counted(scan.text_counts, by_video, exact)
    if keep:
        counted.text_top = scan.text_top
        counted.video_top = RunningTop.merge([work.video_top for work in done])
    return counted


class _TileCounter:
    """Counts of one pass: rows (text -> video) in place, shared by the workers (a text chunk is one worker's),
    columns (video -> text) per worker; and each pair's score as its tile computed it (`exact`, in tile order)."""

    def __init__(self, texts, videos, pairs: _Pairs, keep: tuple[int, int] | None = None):
        self.texts, self.videos, self.pairs, self.keep = texts, videos, pairs, keep
        # 0.0/1.0 floats sum several times faster than bools in torch, and exactly below 2**24.
        tiling = pairs.tiling
        self.dtype = torch.float32 if max(tiling.num_texts, tiling.num_videos) < 2**24 else torch.float64
        self.text_counts = torch.zeros(pairs.thresholds.shape[0], dtype=self.dtype, device=texts.device)
        self.exact = torch.empty_like(pairs.thresholds)
        self.text_top = None
        if keep:
            self.text_top = RunningTop(tiling.num_texts, keep[0], texts.dtype)

    def chunks(self, chunks) -> _Work:
        """Count every tile of the text chunks `chunks`; returns what the worker added up."""
        tiling = self.pairs.tiling
        work = _Work(
            tile=torch.empty(tiling.rows * tiling.columns, dtype=self.texts.dtype, device=self.texts.device),
            scratch=_Scratch(self.dtype, self.texts.device),
            video_counts=torch.zeros_like(self.text_counts),
        )
        if self.keep:
            work.video_top = RunningTop(tiling.num_videos, self.keep[1], self.texts.dtype)
        for i in chunks:
            for j in range(len(tiling.tile_starts)):
                self.tile(i, j, work)
        return work

    def tile(self, i: int, j: int, work: _Work) -> None:
        """Compute tile (i, j), take the own scores it holds, and count it slice by slice."""
        pairs, tiling = self.pairs, self.pairs.tiling
        per_chunk = tiling.slices_per_chunk
        slices = range(i * per_chunk, min((i + 1) * per_chunk, len(pairs.rows.bounds) - 1))
        rows, columns = pairs.rows.bounds, pairs.columns.bounds
        if not self.keep and rows[slices[0]] == rows[slices[-1] + 1] and columns[j] == columns[j + 1]:
            return  # a recount with no pair in this tile's rows or columns
        start, left = i * tiling.rows, j * tiling.columns
        chunk, gallery = self.texts[start : start + tiling.rows], self.videos[left : left + tiling.columns]
        shape = (chunk.shape[0], gallery.shape[0])
        scores = torch.mm(chunk, gallery.T, out=work.tile[: shape[0] * shape[1]].view(shape))
        number = i * len(tiling.tile_starts) + j
        lo, hi = pairs.own.bounds[number : number + 2]
        if lo < hi:
            self.exact[lo:hi] = scores.view(-1)[pairs.own.position[lo:hi]]
        tops = self._tops(scores, start, left, work)
        for k, top in zip(slices, range(0, shape[0], tiling.count_rows), strict=True):
            piece = _Slice(scores[top : top + tiling.count_rows], k, j, start + top, left)
            self.slice(piece, work)
            for best, transposed, found in tops:
                first_query, first_item = (left, piece.first_text) if transposed else (piece.first_text, left)
                found.append(best.candidates(piece.scores, first_query, first_item, transposed))
        for best, _, found in tops:  # merged once per tile: a chunk's worth at once took longer (larger sorts)
            best.take(found)

    def _tops(self, scores, start: int, left: int, work: _Work) -> list[tuple[RunningTop, bool, list]]:
        """Offer the tile's scores to the texts' and the videos' `RunningTop`s: the whole tile where its queries are
        not yet filled (their first tile), else, returned, where each slice's candidates go while it is in cache."""
        if not self.keep:
            return []
        tops = []
        for best, first, count, transposed in (
            (self.text_top, start, scores.shape[0], False),
            (work.video_top, left, scores.shape[1], True),
        ):
            if best.filled(first, count):
                tops.append((best, transposed, []))
            else:
                best.offer(scores, first, left if not transposed else start, transposed)
        return tops

    def slice(self, piece: _Slice, work: _Work) -> None:
        """Count one slice: its rows for the pairs whose text it holds, its columns for those whose video it holds."""
        rows, columns = self.pairs.rows, self.pairs.columns
        lo, hi = rows.bounds[piece.index : piece.index + 2]
        if lo < hi:
            block = piece.scores
            if not rows.in_place:
                block = block.index_select(0, rows.query[lo:hi] - piece.first_text)
            _count(block, rows.own.part(lo, hi), piece.first_video, work.scratch, self.text_counts[lo:hi])
        lo, hi = columns.bounds[piece.column : piece.column + 2]
        if lo < hi:
            block = piece.scores
            if not columns.in_place:
                block = block.index_select(1, columns.query[lo:hi] - piece.first_video)
            _count(block.T, columns.own.part(lo, hi), piece.first_text, work.scratch, work.video_counts[lo:hi])


@dataclass
class _Work:
    """What one worker thread reuses and adds up: its tile buffer, its comparison scratch and its column counts
    (video order)."""

    tile: torch.Tensor
    scratch: _Scratch
    video_counts: torch.Tensor
    video_top: RunningTop | None = None


@dataclass(frozen=True)
class _Slice:
    """Rows of one tile counted together, slice `index` of the pass: the scores of the texts from `first_text`
    against the videos from `first_video`, tile column `column`."""

    scores: torch.Tensor
    index: int
    column: int
    first_text: int
    first_video: int


def _count(block, own: _OwnItems, first_item: int, scratch: _Scratch, counts) -> None:
    """Add to `counts` per row of `block` (items numbered from `first_item`) the items ahead of the row's own item
    by the tie rule: one ">=" pass against the own score where the block lies before the own item, against the
    next float up (">" the own score) where it lies after; rows holding their own item split."""
    last_item = first_item + block.shape[1]
    threshold = torch.where(own.item < first_item, own.above, own.score)[:, None]
    ahead = torch.ge(block, threshold, out=scratch.like(block)).sum(1)
    inside = torch.nonzero((own.item >= first_item) & (own.item < last_item)).flatten()
    if inside.numel():
        rows, position = block.index_select(0, inside), own.item[inside] - first_item
        ahead[inside] = _split(rows, own.score[inside], position, ahead[inside], scratch)
    counts += ahead


def _split(rows, own_score, position, at_least, scratch: _Scratch) -> torch.Tensor:
    """The tie rule on rows that hold their own item at `position`, given their counts `at_least` of scores >= the
    own score: scores above it, plus ties before the own item. A row tied only with its own item (the common case)
    needs no more than the ">" count; other ties are rare and resolved row by row."""
    own_score = own_score[:, None]
    above = torch.gt(rows, own_score, out=scratch.like(rows)).sum(1)
    tied = torch.nonzero(at_least - above > 1).flatten()
    if tied.numel():
        index = torch.arange(rows.shape[1], device=rows.device)
        equal = rows.index_select(0, tied) == own_score[tied]
        above[tied] += (equal & (index < position[tied, None])).sum(1).to(above.dtype)
    return above


@contextmanager
def _full_precision_matmul():
    """Full float32 products for the pass, whatever the caller set (TF32 on CUDA, bfloat16 in oneDNN on CPU: far
    outside the error bound the top items' proof assumes), restored afterwards. The setting is the process's: another
    thread's products during the pass run in full precision too. torch's newer per-backend setting where it has one
    (mixing it with the older ones is an error there), else the older global one."""
    backends = [getattr(getattr(torch.backends, name, None), "matmul", None) for name in ("cuda", "mkldnn")]
    backends = [backend for backend in backends if backend is not None and hasattr(backend, "fp32_precision")]
    if not backends:
        precision = torch.get_float32_matmul_precision()
        torch.set_float32_matmul_precision("highest")
        try:
            yield
        finally:
            torch.set_float32_matmul_precision(precision)
        return
    saved = [backend.fp32_precision for backend in backends]
    for backend in backends:
        backend.fp32_precision = "ieee"
    try:
        yield
    finally:
        for backend, precision in zip(backends, saved, strict=True):
            backend.fp32_precision = precision


@contextmanager
def _single_threaded_ops():
    """Run torch ops on the calling thread only, restoring the thread count afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


class _Scratch:
    """A reused float buffer the comparisons are written to: summing 0.0/1.0 floats is several times faster than
    summing bools in torch, and exact while counts stay below 2**24 (float64 beyond that)."""

    def __init__(self, dtype, device):
        self.buffer = torch.empty(0, dtype=dtype, device=device)

    def like(self, block: torch.Tensor) -> torch.Tensor:
        if self.buffer.numel() < block.numel():
            self.buffer = torch.empty(block.numel(), dtype=self.buffer.dtype, device=self.buffer.device)
        # Same layout as `block` (a transposed view for the column counts), so the sums run along memory.
        if block.stride(0) == 1 and block.shape[0] > 1:
            return self.buffer[: block.numel()].view(block.shape[1], block.shape[0]).T
        return self.buffer[: block.numel()].view(block.shape)
