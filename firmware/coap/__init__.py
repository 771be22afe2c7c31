# The ECLOR CoAP stack for MicroPython: codec, endpoint (client + server on one
# socket), observe, block-wise, link-format, RD registration.  See
# docs/coap-stack.md.  Kept empty so `from coap import codec` costs nothing extra.
