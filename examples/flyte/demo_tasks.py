"""The flytekit tasks behind the example AgentTasks (serialized by ../generate.py with pyflyte).

Written exactly as a Flyte user writes them; the demo runs them on Kubernetes through the
operator instead of through Flyte.  The webhook tasks call the demo server
(``examples/webhook_server.py``) on 127.0.0.1:18080.
"""

import datetime

from flytekit.extras.webhook import WebhookTask
from flytekit.sensor import FileSensor

#: succeeds once its ``path`` input exists
wait_for_file = FileSensor(name="wait_for_file")

#: GET with a query string; no inputs
webhook_status = WebhookTask(
    name="webhook_status",
    url="http://127.0.0.1:18080/status",
    method="GET",
    data={"verbose": "1"},
    show_url=True,
    timeout=datetime.timedelta(seconds=10),
)

#: POST whose URL, header and JSON body are templated from plain inputs
webhook_order = WebhookTask(
    name="webhook_order",
    url="http://127.0.0.1:18080/orders/{inputs.order_id}",
    method="POST",
    headers={"Content-Type": "application/json", "X-Customer": "{inputs.customer}"},
    data={"order": "{inputs.order_id}", "customer": "{inputs.customer}",
          "note": "order {inputs.order_id} for {inputs.customer}"},
    dynamic_inputs={"order_id": int, "customer": str},
    show_data=True,
    show_url=True,
    timeout=datetime.timedelta(seconds=10),
)
