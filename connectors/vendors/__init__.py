"""Vendor presets: connectors for specific OA/HR systems (Weaver, Seeyon, DingTalk, WeCom,
Feishu, SuccessFactors), each with its builtin mapping and public default endpoints."""
