// node's child_process.execSync → /bin/sh -c
import { execSync } from 'node:child_process';
import fs from 'node:fs';
let detail;
try {
  execSync(`echo pwned > ${process.env.MARK}`, { stdio: 'ignore' });
  detail = 'execSync: exit 0';
} catch (e) {
  detail = `execSync: ${e.signal ? `killed by ${e.signal}` : e.code ?? `status ${e.status}`}`;
}
console.log(JSON.stringify({ through: fs.existsSync(process.env.MARK), detail }));
