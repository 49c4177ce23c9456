import { describe, expect, it } from 'vitest';
import { DEFAULT_POD_NETWORK, DNS_SERVICE_IP, guardRuleset, SERVICE_CIDR } from './hostnet.ts';
import { cniConflist, coreDnsManifests, kubeProxyConfiguration, NODE_NAME } from './node.ts';

describe('the host guard ruleset', () => {
  const rules = guardRuleset(DEFAULT_POD_NETWORK);

  it('replaces its own table atomically (declare, delete, define)', () => {
    expect(rules.split('\n').slice(0, 3)).toEqual([
      'table inet srguard',
      'delete table inet srguard',
      'table inet srguard {',
    ]);
  });

  it('drops forwarding between the bridge and any other interface, before kube-proxy', () => {
    expect(rules).toContain('type filter hook forward priority -10; policy accept;');
    expect(rules).toContain('iifname "srbr0" oifname != "srbr0" counter drop');
    expect(rules).toContain('oifname "srbr0" iifname != "srbr0" counter drop');
  });

  it('drops pod and Service range packets leaving by anything but the bridge or loopback', () => {
    expect(rules).toContain(
      `oifname != { "srbr0", "lo" } ip daddr { ${SERVICE_CIDR}, ${DEFAULT_POD_NETWORK.subnet} } counter drop`,
    );
    expect(rules).toContain(
      `oifname != { "srbr0", "lo" } ip saddr ${DEFAULT_POD_NETWORK.subnet} counter drop`,
    );
  });
});

describe('the node network settings', () => {
  it('routes only the pod subnet and the Service range into pods, without masquerade', () => {
    const conf = cniConflist(DEFAULT_POD_NETWORK, '/state') as {
      plugins: { type: string; ipMasq?: boolean; ipam?: { routes: unknown[] } }[];
    };
    const bridge = conf.plugins.find((p) => p.type === 'bridge');
    expect(bridge?.ipMasq).toBe(false);
    expect(bridge?.ipam?.routes).toEqual([
      { dst: '10.244.0.0/24' },
      { dst: '10.0.0.0/24', gw: '10.244.0.1' },
    ]);
  });

  it('runs kube-proxy in nftables mode, NodePorts on the bridge only, host sysctls untouched', () => {
    const config = kubeProxyConfiguration({
      kubeconfig: '/k',
      network: DEFAULT_POD_NETWORK,
      healthzPort: 1001,
      metricsPort: 1002,
    });
    expect(config).toMatchObject({
      kind: 'KubeProxyConfiguration',
      mode: 'nftables',
      hostnameOverride: NODE_NAME,
      clusterCIDR: '10.244.0.0/24',
      nodePortAddresses: ['10.244.0.1/32'],
      healthzBindAddress: '127.0.0.1:1001',
      metricsBindAddress: '127.0.0.1:1002',
      conntrack: { maxPerCore: 0, min: 0, tcpEstablishedTimeout: '0s', tcpCloseWaitTimeout: '0s' },
    });
  });

  it('serves DNS from a non-root CoreDNS that never forwards upstream', () => {
    const list = coreDnsManifests() as {
      items: { kind: string; data?: { Corefile: string }; spec?: Record<string, unknown> }[];
    };
    const corefile = list.items.find((i) => i.kind === 'ConfigMap')?.data?.Corefile ?? '';
    expect(corefile).toContain('kubernetes cluster.local in-addr.arpa ip6.arpa');
    expect(corefile).toMatch(/^\.:1053 \{/);
    expect(corefile).not.toContain('forward');
    const service = list.items.find((i) => i.kind === 'Service');
    expect(service?.spec).toMatchObject({
      clusterIP: DNS_SERVICE_IP,
      ports: [
        { port: 53, targetPort: 1053, protocol: 'UDP' },
        { port: 53, targetPort: 1053, protocol: 'TCP' },
      ],
    });
    const deployment = JSON.stringify(list.items.find((i) => i.kind === 'Deployment'));
    expect(deployment).toContain('"runAsNonRoot":true');
    expect(deployment).toContain('"runAsUser":65532');
    expect(deployment).toContain('"dnsPolicy":"Default"');
  });
});
