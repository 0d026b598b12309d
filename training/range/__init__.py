"""Cyber range: real labeled IoT traffic recorded with real attack tools in network namespaces.

The range builds an isolated IoT site entirely out of Linux network namespaces (a bridge namespace,
a gateway running mosquitto and dnsmasq, device namespaces with benign MQTT/CoAP/HTTP/DNS behaviour,
an attacker namespace), records it with tcpdump at the bridge, runs a scheduled list of ATT&CK
techniques with real tools (nmap, hping3, hydra, slowhttptest, mosquitto_pub, coap-client, scapy)
and writes a ground-truth CSV next to the capture.

Modules
-------
techniques
    The technique library: one declarative :class:`~training.range.techniques.Technique` per entry.
scenario
    YAML scenario files (site, benign warm-up, attack schedule, seed) and their validation.
netns
    Namespace topology and process bookkeeping with guaranteed teardown.
recorder
    ``record``: build the site, run benign behaviour and the attack schedule, capture.
groundtruth
    The ground-truth CSV format (:data:`~training.range.groundtruth.GROUND_TRUTH_COLUMNS`).
label
    Capture + ground truth -> labeled windows (Parquet).
mix
    Merge a public attack-only capture into a benign capture on one timeline.
stats
    Attacker packets per ground-truth interval.
arpspoof
    The scapy ARP poisoner run by the ``arp_spoof`` technique.

The CLI is ``marlids range`` (:mod:`training.range.cli`); see ``training/range/README.md``.
"""
