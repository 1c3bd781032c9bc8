"""Built-in agents, usable without flytekit and registered through entry points.

* ``sensor`` (:class:`~agent_operator.agents.sensor.SensorAgent`): flytekit's FileSensor.
* ``webhook`` (:class:`~agent_operator.agents.webhook.WebhookAgent`): flytekit's WebhookTask.
"""
