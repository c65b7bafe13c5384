from celery import shared_task

from .services import verification_run


@shared_task(bind=True, acks_late=True)
def verify_chain(self, run_id: int) -> str:
    return verification_run(run_id=run_id).state
