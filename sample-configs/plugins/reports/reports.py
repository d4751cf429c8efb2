"""A sample plugin callable: jobctl runs it in a worker process."""


def daily_summary(ctx):  # type: ignore[no-untyped-def]
    ctx.logger.info("summary for %s (trigger %s)", ctx.task_id, ctx.trigger)
    top = ctx.payload.get("top", 3)
    print(f"would mail the top {top} items to {', '.join(ctx.payload['recipients'])}")
