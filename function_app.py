"""Azure Functions entry points (Python v2 programming model). Thin: decode, call sync/, return.

- ``plan_sync``: timer on the ``SYNC_SCHEDULE`` app setting (a tick); plans every sync definition
  that is due, paging its table into messages.
- ``continue_plan``: the plan queue; goes on with a plan that ran out of its time budget.
- ``process_batch``: the batches queue; enriches and writes one message's records (the function
  keeps the name it was deployed with).
- ``record_queue_metrics``: timer on ``SYNC_QUEUE_METRICS_SCHEDULE``; queue depth and age gauges.

host.json sets ``messageEncoding`` to ``none``: the worker decodes the base64 itself, so a message
that is not base64 reaches the poison queue with its reason instead of failing in the host.
"""

from __future__ import annotations

import azure.functions as func

from sync import entry
from sync.config.storage_names import BATCH_QUEUE, PLAN_QUEUE, STORAGE_CONNECTION

entry.check_settings()  # a misconfigured app fails here, at load, and consumes no message
entry.start_telemetry()  # to Application Insights when its connection string is set

app = func.FunctionApp()


@app.timer_trigger(schedule="%SYNC_SCHEDULE%", arg_name="timer", run_on_startup=False,
                   use_monitor=True)
async def plan_sync(timer: func.TimerRequest) -> None:
    """Plan a run of every definition that is due: each record that needs enrichment goes on
    the batches queue."""
    await entry.plan_sync()


@app.queue_trigger(arg_name="msg", queue_name=PLAN_QUEUE, connection=STORAGE_CONNECTION)
async def continue_plan(msg: func.QueueMessage) -> None:
    """Go on with a long plan where the previous invocation stopped."""
    await entry.continue_plan(msg.get_body())


@app.queue_trigger(arg_name="msg", queue_name=BATCH_QUEUE, connection=STORAGE_CONNECTION)
async def process_batch(msg: func.QueueMessage) -> None:
    """Carry out one message; raises only when unfinished work could not be saved."""
    await entry.process_message(msg.get_body())


@app.timer_trigger(schedule="%SYNC_QUEUE_METRICS_SCHEDULE%", arg_name="timer",
                   run_on_startup=False, use_monitor=False)
async def record_queue_metrics(timer: func.TimerRequest) -> None:
    """Sample every queue's depth and oldest message's age for the dashboards and alerts."""
    await entry.record_queue_metrics()
