"""Exchange's decision rules as plain functions over plain data (no I/O, no asyncio).

Which receive connector takes a session, which permissions it grants, what the EHLO reply lists,
which send connector and next hop a recipient gets, which certificate a connector presents: the
asyncio servers and clients only carry out what these functions decide.
"""
