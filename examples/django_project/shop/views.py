import json

from django.db import transaction
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from shop.models import Order
from shop.tasks import send_confirmation

try:
    from django.tasks.exceptions import TaskResultDoesNotExist
except ImportError:
    from django_tasks.exceptions import TaskResultDoesNotExist


@csrf_exempt
@require_POST
def place_order(request: HttpRequest) -> JsonResponse:
    body = json.loads(request.body)
    with transaction.atomic():
        order = Order.objects.create(email=body["email"], total_cents=body["total_cents"])
        # Stored in this transaction: a worker can only see it once the order exists.
        result = send_confirmation.enqueue(order.id)
        if body.get("fail"):  # to show the rollback: the order and its task vanish
            transaction.set_rollback(True)
            return JsonResponse({"error": "rolled back", "task": result.id}, status=409)
    return JsonResponse({"order": order.id, "task": result.id}, status=201)


@require_GET
def order(request: HttpRequest, order_id: int) -> JsonResponse:
    o = Order.objects.filter(id=order_id).first()
    if o is None:
        return JsonResponse({"error": "no such order"}, status=404)
    return JsonResponse({"order": o.id, "confirmed": o.confirmed})


@require_GET
def task_result(request: HttpRequest, result_id: str) -> JsonResponse:
    try:
        result = send_confirmation.get_result(result_id)
    except TaskResultDoesNotExist:
        return JsonResponse({"error": "no such task"}, status=404)
    return JsonResponse({
        "status": str(result.status),
        "return_value": result.return_value if result.status == "SUCCESSFUL" else None,
        "errors": [e.exception_class_path for e in result.errors],
        "attempts": result.attempts,
    })  # fmt: skip
