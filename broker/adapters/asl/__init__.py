"""Amazon States Language, as a pure interpreter: no I/O, no clock, no randomness of its own.

* ``jsonpath``   the JSONPath subset ASL uses (Paths, Reference Paths, filters), evaluated here;
* ``intrinsics`` the ``States.*`` intrinsic functions;
* ``timestamps`` RFC 3339 timestamps to and from epoch milliseconds;
* ``jsonata``    JSONata expressions (``{% ... %}``) through the ``jsonata-python`` library,
  with ``$now``/``$millis``/``$random``/``$uuid`` fed from the execution's inputs;
* ``validate``   definition checks, with AWS's diagnostic codes and locations;
* ``interpreter`` an execution as a state machine: inputs (start, task result, timer fired,
  heartbeat, stop, redrive), each with the time it happened, in; history events, task requests
  and timers (absolute due times) out. Fed the same inputs, it reaches the same state, so a
  journal of inputs is a durable execution.
"""
