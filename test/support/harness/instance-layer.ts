// What a test of the per-user stages needs from the stages before them,
// without running those: node at /usr/local/bin (the node stage), a t3
// stand-in program (the t3 stage) and the t3-serve@ template (the units stage).
import { NODE_IN_CONTAINER, PROJECT_DIR_IN_CONTAINER } from "./copy-project.ts";
import type { DevvmContainer } from "./devvm-container.ts";

/** Installs node, `t3Program` as /usr/local/bin/t3, and the t3-serve@ template, as those stages would. */
export async function installInstanceLayer(vm: DevvmContainer, t3Program: string): Promise<void> {
  await vm.exec(
    [
      "sh",
      "-c",
      `ln -s ${NODE_IN_CONTAINER} /usr/local/bin/node && printf %s "$T3" > /usr/local/bin/t3 && chmod 755 /usr/local/bin/t3`,
    ],
    { check: true, env: { T3: t3Program } },
  );
  await vm.exec(
    `install -m 0644 ${PROJECT_DIR_IN_CONTAINER}/files/service/units/t3-serve@.service /etc/systemd/system/ && systemctl daemon-reload`,
    { check: true },
  );
}
