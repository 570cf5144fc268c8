#!/usr/bin/env node
// A tiny MCP server for tests (issue 12 §5; docs/CONTRACTS.md "MCP connectors"):
// stdio transport, newline-delimited JSON-RPC 2.0, Node.js stdlib only.
// Usage: node mcp_echo_server.js [MARKER_FILE] (default ./mcp-echo-called.txt;
// Codex passes its MCP servers only a few environment variables, so the path
// is an argument). Tools: `echo` {text} appends "<text>\n" to the marker and
// answers "mcp-echo: <text>"; `delete_ticket` {id} appends "DELETED <id>\n"
// (for deny rules on mcp_tool: the marker shows whether the call got here).
// Every request is appended to MCP_ECHO_LOG if set.
'use strict';
const fs = require('fs');
const readline = require('readline');

const marker = process.argv[2] || 'mcp-echo-called.txt';
const TOOLS = [{
  name: 'echo',
  description: 'Echoes its text back and records the call.',
  inputSchema: {type: 'object', properties: {text: {type: 'string'}}, required: ['text']},
}, {
  name: 'delete_ticket',
  description: 'Deletes a ticket (records the call).',
  inputSchema: {type: 'object', properties: {id: {type: 'string'}}, required: ['id']},
}];

function send(msg) {
  process.stdout.write(JSON.stringify(msg) + '\n');
}

function answer(req) {
  switch (req.method) {
    case 'initialize':
      return {
        protocolVersion: (req.params && req.params.protocolVersion) || '2025-06-18',
        capabilities: {tools: {listChanged: false}},
        serverInfo: {name: 'paddock-test-echo', version: '1.0.0'},
      };
    case 'ping':
      return {};
    case 'tools/list':
      return {tools: TOOLS};
    case 'tools/call': {
      const p = req.params || {};
      if (p.name === 'delete_ticket') {
        const id = String((p.arguments && p.arguments.id) || '');
        fs.appendFileSync(marker, `DELETED ${id}\n`);
        return {content: [{type: 'text', text: `deleted ${id}`}]};
      }
      if (p.name !== 'echo')
        return {content: [{type: 'text', text: `unknown tool ${p.name}`}], isError: true};
      const text = String((p.arguments && p.arguments.text) || '');
      fs.appendFileSync(marker, text + '\n');
      return {content: [{type: 'text', text: `mcp-echo: ${text}`}]};
    }
    case 'resources/list':
      return {resources: []};
    case 'prompts/list':
      return {prompts: []};
    default:
      return undefined;
  }
}

readline.createInterface({input: process.stdin}).on('line', (line) => {
  let req;
  try {
    req = JSON.parse(line);
  } catch (e) {
    return;
  }
  if (process.env.MCP_ECHO_LOG)
    fs.appendFileSync(process.env.MCP_ECHO_LOG, line + '\n');
  if (req.id === undefined || req.id === null)
    return; // a notification
  const result = answer(req);
  if (result === undefined)
    send({jsonrpc: '2.0', id: req.id, error: {code: -32601, message: `method not found: ${req.method}`}});
  else
    send({jsonrpc: '2.0', id: req.id, result});
});
