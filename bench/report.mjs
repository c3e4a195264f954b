// Turns bench/run.sh's raw results into the printed table and bench/results/latest.json.
//   node bench/report.mjs RESULTS.jsonl META.json VERSIONS.json OUT.json
import { readFileSync, writeFileSync } from 'node:fs';

const [resultsFile, metaFile, versionsFile, outFile] = process.argv.slice(2);
const runs = readFileSync(resultsFile, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l));
const meta = JSON.parse(readFileSync(metaFile, 'utf8'));
const versions = JSON.parse(readFileSync(versionsFile, 'utf8'));

// Issue targets: Tessera ≥ 5× the peer's req/s, a lower p99, peak RSS under a third of the peer's.
const TARGET_RPS_RATIO = 5;
const TARGET_RSS_RATIO = 1 / 3;

const comparisons = [];
const keys = [...new Set(runs.map((r) => `${r.scenario}|${r.concurrency}`))];
for (const key of keys) {
  const [scenario, c] = key.split('|');
  const pick = (server) => runs.find((r) => r.scenario === scenario && String(r.concurrency) === c && r.server === server);
  const t = pick('tessera');
  const p = pick('peer');
  comparisons.push({
    scenario,
    concurrency: Number(c),
    tessera: t && { rps: t.rps, p50_ms: t.p50_ms, p99_ms: t.p99_ms, non2xx: t.non2xx, cpu_share: t.server_cpu_share, rps_per_cpu: t.rps_per_server_cpu },
    peer: p && { rps: p.rps, p50_ms: p.p50_ms, p99_ms: p.p99_ms, non2xx: p.non2xx, cpu_share: p.server_cpu_share, rps_per_cpu: p.rps_per_server_cpu },
    rps_ratio: t && p ? t.rps / p.rps : null,
    per_cpu_ratio: t?.rps_per_server_cpu && p?.rps_per_server_cpu ? t.rps_per_server_cpu / p.rps_per_server_cpu : null,
    p99_ratio: t && p ? t.p99_ms / p.p99_ms : null,
  });
}
const invalid = runs.filter((r) => r.non2xx > 0 || r.exhausted);
const rss = meta.rss_kib;
const rssRatio = {
  idle: rss.tessera.idle / rss.peer.idle,
  peak: rss.tessera.peak / rss.peer.peak,
};

const fmt = (v, d = 0) => (v === null || v === undefined ? '—' : Number(v).toFixed(d));
const pad = (s, n) => String(s).padStart(n);
const lines = [];
lines.push('');
lines.push(`Token endpoint, ${meta.duration_s} s per run after ${meta.warmup_s} s warm-up; both servers on CPU 0, load generator on CPU 1`);
lines.push(`Tessera ${versions.tessera} (${versions.tessera_commit}) vs oidc-provider ${versions.oidc_provider} on node ${versions.node}`);
lines.push('');
lines.push(`${'scenario'.padEnd(20)} ${pad('conc', 4)} ${pad('Tessera req/s', 13)} ${pad('peer req/s', 11)} ${pad('ratio', 6)} ${pad('T p50 ms', 9)} ${pad('P p50 ms', 9)} ${pad('T p99 ms', 9)} ${pad('P p99 ms', 9)} ${pad('p99 T/P', 8)}`);
for (const c of comparisons) {
  lines.push(`${c.scenario.padEnd(20)} ${pad(c.concurrency, 4)} ${pad(fmt(c.tessera?.rps), 13)} ${pad(fmt(c.peer?.rps), 11)} ${pad(c.rps_ratio === null ? '—' : `${fmt(c.rps_ratio, 2)}×`, 6)} ${pad(fmt(c.tessera?.p50_ms, 2), 9)} ${pad(fmt(c.peer?.p50_ms, 2), 9)} ${pad(fmt(c.tessera?.p99_ms, 2), 9)} ${pad(fmt(c.peer?.p99_ms, 2), 9)} ${pad(c.p99_ratio === null ? '—' : fmt(c.p99_ratio, 2), 8)}`);
}
lines.push('');
lines.push('Requests per CPU second of the server (CPU time of all its threads during the run; "share" = CPU seconds per second)');
lines.push(`${'scenario'.padEnd(20)} ${pad('conc', 4)} ${pad('T share', 8)} ${pad('P share', 8)} ${pad('T req/CPU-s', 12)} ${pad('P req/CPU-s', 12)} ${pad('ratio', 7)}`);
for (const c of comparisons) {
  lines.push(`${c.scenario.padEnd(20)} ${pad(c.concurrency, 4)} ${pad(fmt(c.tessera?.cpu_share, 2), 8)} ${pad(fmt(c.peer?.cpu_share, 2), 8)} ${pad(fmt(c.tessera?.rps_per_cpu), 12)} ${pad(fmt(c.peer?.rps_per_cpu), 12)} ${pad(c.per_cpu_ratio === null ? '—' : `${fmt(c.per_cpu_ratio, 2)}×`, 7)}`);
}
const mib = (k) => (k / 1024).toFixed(1);
lines.push('');
lines.push(`RSS (MiB)     ${pad('Tessera', 8)} ${pad('peer', 8)} ${pad('T/P', 6)}`);
lines.push(`idle          ${pad(mib(rss.tessera.idle), 8)} ${pad(mib(rss.peer.idle), 8)} ${pad(fmt(rssRatio.idle, 2), 6)}`);
lines.push(`peak (VmHWM)  ${pad(mib(rss.tessera.peak), 8)} ${pad(mib(rss.peer.peak), 8)} ${pad(fmt(rssRatio.peak, 2), 6)}`);
lines.push(`after load    ${pad(mib(rss.tessera.end), 8)} ${pad(mib(rss.peer.end), 8)}`);
lines.push('');
const verdicts = [];
for (const c of comparisons.filter((x) => x.rps_ratio !== null)) {
  const rpsOk = c.rps_ratio >= TARGET_RPS_RATIO;
  const p99Ok = c.p99_ratio < 1;
  verdicts.push({ scenario: c.scenario, concurrency: c.concurrency, rps_ratio_met: rpsOk, p99_lower: p99Ok });
  lines.push(`target ${c.scenario} c=${c.concurrency}: req/s ratio ${fmt(c.rps_ratio, 2)}× (≥ ${TARGET_RPS_RATIO}× ${rpsOk ? 'met' : 'MISSED'}), per CPU-s ${fmt(c.per_cpu_ratio, 2)}×, p99 ${p99Ok ? 'lower' : 'NOT lower'}`);
}
for (const r of invalid) {
  lines.push(`INVALID ${r.scenario} c=${r.concurrency} ${r.server}: ${r.non2xx} non-2xx responses${r.exhausted ? ', assertions ran out' : ''} — its figures do not measure token issuance`);
}
const rssOk = rssRatio.peak < TARGET_RSS_RATIO;
lines.push(`target RSS: peak ratio ${fmt(rssRatio.peak, 2)} (< 0.33 ${rssOk ? 'met' : 'MISSED'}), idle ratio ${fmt(rssRatio.idle, 2)}`);
if (meta.skipped.length) lines.push(`skipped scenarios: ${meta.skipped.join(', ')}`);
lines.push(`load average at the end: ${meta.machine.loadavg_at_end.map((v) => v.toFixed(2)).join(' ')} (other work on the machine disturbs the figures)`);
console.log(lines.join('\n'));

writeFileSync(
  outFile,
  `${JSON.stringify({ ...meta, versions, comparisons, rss_ratio: rssRatio, targets: { verdicts, rss_peak_under_third: rssOk }, valid: invalid.length === 0, runs }, null, 2)}\n`,
);
console.log(`\nwrote ${outFile.replace(/^.*\/bench\//, 'bench/')}`);
