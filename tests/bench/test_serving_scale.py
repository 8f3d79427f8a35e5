"""The scale bench of the whole path runs end to end on a tiny catalogue and reports every figure."""

from tastemap.bench.serving_scale import run_size


def test_serving_scale_reports_every_stage_and_serving_figure():
    result = run_size(400, 1.5, 20, 32, requests=20, warmup=5, batch=50, updates=12, seed=0)
    assert (result["n_items"], result["n_users"], result["n_events"]) == (400, 600, 12_000)
    assert list(result["stages"]) == ["generate", "fit", "save", "load"]
    for stage in result["stages"].values():
        assert stage["seconds"] >= 0 and stage["cpu_seconds"] >= 0 and stage["peak_rss_mib"] > 0
    assert result["recommend_ms"]["p50"] <= result["recommend_ms"]["p99"]
    assert 0 < result["first_requests_ms"]["p50"] <= result["first_requests_ms"]["p99"]
    assert result["recommend_cpu_ms_p50"] > 0 and result["batch_users_per_cpu_s"] > 0
    assert result["update_ms_p50"] > 0 and result["update_applied_at_once_ms_p50"] > 0
    assert result["first_updates_ms"]["first"] > 0 and result["first_updates_ms"]["p50"] > 0
    # below the exact limit both indexes are exact, so their recall is 1
    recall = result["index_recall_at_10"]
    assert recall["items"] == {"kind": "exact", "recall": 1.0}
    # flat, every item scored, in float16: near-ties against float32 search may swap
    assert recall["collaborative"]["kind"] == "exact" and 0.99 <= recall["collaborative"]["recall"] <= 1.0
    assert result["collaborative"] == {"rank": 400, "exact": True}


def test_a_size_that_fails_ends_the_bench_naming_the_run_and_how_it_ended():
    import pytest

    from tastemap.bench.scale import run_in_process

    with pytest.raises(SystemExit) as stopped:
        run_in_process("tastemap.bench.serving_scale", "--items", "many")
    assert str(stopped.value) == ("the run --items many exited with code 2; "
                                  "the stages above are the ones it finished")


def test_workers_count_in_the_memory_and_cpu_figures():
    import multiprocessing
    import os
    import time

    import pytest

    from tastemap.bench.measure import cpu_seconds, rss_mib

    if not os.path.exists(f"/proc/{os.getpid()}/task/{os.getpid()}/children"):
        pytest.skip("this kernel's procfs does not list child processes")
    alone, others = rss_mib(), cpu_seconds() - time.process_time()
    worker = multiprocessing.get_context("spawn").Process(target=sum, args=(range(10**9),))  # busy for seconds
    worker.start()
    try:
        time.sleep(2.0)
        assert rss_mib() > alone + 1  # the worker's proportional set size is counted
        assert cpu_seconds() - time.process_time() - others > 0.2  # and its CPU time while it runs
    finally:
        worker.terminate()
        worker.join()


def test_a_slow_memory_sample_is_taken_less_often(monkeypatch):
    """Sampling takes at most SAMPLER_DUTY of a core: a 10 ms sample every 1 ms would be ~30
    samples in 0.3 s; waiting 20 times the sample's duration leaves at most 2."""
    import threading
    import time

    from tastemap.bench import measure

    def slow_rss() -> float:
        time.sleep(0.01)
        return 1.0

    monkeypatch.setattr(measure, "rss_mib", slow_rss)
    stop, samples = threading.Event(), []
    sampler = threading.Thread(target=lambda: samples.extend(measure.sample_memory(stop, 0.001)))
    sampler.start()
    time.sleep(0.3)
    stop.set()
    sampler.join()
    assert 1 <= len(samples) <= 2 and samples[0] == 1.0


def test_a_stage_reports_a_peak_the_sampler_did_not_see():
    """A 400 MB array held for less than the sampling interval is still in the stage's peak
    (the kernel's high-water mark of this process, restarted at each stage)."""
    import os

    import numpy as np
    import pytest

    from tastemap.bench.scale import StageMeter

    if not os.path.exists("/proc/self/clear_refs"):
        pytest.skip("this kernel's procfs cannot restart a process's resident peak")
    meter = StageMeter(interval=60.0)
    with meter.stage("before"):
        pass
    with meter.stage("spike"):
        np.ones(400 * 2**20 // 8).sum()
    with meter.stage("after"):
        pass
    meter.close()
    spike, after = meter.results["spike"]["peak_rss_mib"], meter.results["after"]["peak_rss_mib"]
    assert spike > meter.results["before"]["peak_rss_mib"] + 350 and after < spike - 350


def test_peak_memory_reports_a_peak_its_sampler_did_not_see():
    """As a stage: a 400 MB array held for less than the sampling interval is in the block's peak."""
    import os

    import numpy as np
    import pytest

    from tastemap.bench.measure import PeakMemory

    if not os.path.exists("/proc/self/clear_refs"):
        pytest.skip("this kernel's procfs cannot restart a process's resident peak")
    with PeakMemory(interval=60.0) as spike:
        np.ones(400 * 2**20 // 8).sum()
    with PeakMemory(interval=60.0) as quiet:
        pass
    assert spike.peak_mib > 350 and quiet.peak_mib < 50


def test_serving_a_saved_model_reports_requests_and_a_one_thread_batch(tmp_path):
    from tastemap.bench.serving_scale import serve_saved
    from tastemap.runtime.io.events import align_events
    from tastemap.runtime.io.synthetic import make_synthetic
    from tastemap.runtime.pipeline.model import TastemapModel

    data = make_synthetic(n_users=300, n_items=200, n_events=6_000, n_topics=10, dim=32, seed=0)
    interactions, _ = align_events(data.events, data.catalog)
    TastemapModel.fit(interactions, data.catalog, data.item_vectors, seed=0).save(tmp_path / "model")
    result = serve_saved(tmp_path / "model", requests=20, warmup=5, batch=40, seed=0)
    assert list(result) == ["model", "recommend_ms", "recommend_cpu_ms_p50", "batch_one_thread_users_per_s"]
    assert 0 < result["recommend_ms"]["p50"] <= result["recommend_ms"]["p99"]
    assert result["recommend_cpu_ms_p50"] > 0 and result["batch_one_thread_users_per_s"] > 0


def test_serving_a_folder_that_is_not_a_model_exits_2_naming_it(tmp_path, capsys):
    import pytest

    from tastemap.bench.serving_scale import main

    with pytest.raises(SystemExit) as stopped:
        main(["--serve", str(tmp_path / "nothing")])
    assert stopped.value.code == 2
    assert capsys.readouterr().err == (f"error: fitted model {tmp_path / 'nothing'} does not exist; "
                                       f"create it with `tastemap fit --out {tmp_path / 'nothing'}`\n")
