#!/usr/bin/env node
// The `keybrake-exec` bin, for user containers: needs Node and @keybrake/client only (no proxy, no vendor SDK).
import { execCommand } from './exec-cli.js';

process.exitCode = await execCommand(process.argv.slice(2));
