#!/usr/bin/env python3
"""Runs the original Pushi (PyPI pushi-service 0.6.10) without a MongoDB server.

appier asks `pymongo.MongoClient` for its connection; this swaps in `mongomock.MongoClient`
(an in-process, in-memory stand-in) before `python -m pushi.base` starts, so the original runs
unchanged otherwise. Configure it with its usual environment variables (APP_HOST, APP_PORT for
the REST API, SERVER_HOST, SERVER_PORT for WebSockets, PUSHI_HANDLERS=0 to skip the APN, SMTP,
web hook and Web Push handlers). Needs: pip install pushi-service==0.6.10 pymongo mongomock.
"""

import runpy

import mongomock
import pymongo

pymongo.MongoClient = mongomock.MongoClient

runpy.run_module("pushi.base", run_name="__main__", alter_sys=True)
