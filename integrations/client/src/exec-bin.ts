#!/usr/bin/env node
// The `keybrake-exec` bin: `keybrake exec` for containers that do not carry the proxy.
import { execCommand } from './exec-cli.js';

process.exitCode = await execCommand(process.argv.slice(2));
